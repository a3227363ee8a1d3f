"""`python -m velocast.ingest`: the command; the code lives in velocast.train.ingest
(offline only, never in a function bundle: scripts/package.py leaves this folder out)."""
