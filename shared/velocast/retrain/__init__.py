"""`python -m velocast.retrain`: the command; the code lives in velocast.train.retrain
(offline only, never in a function bundle: scripts/package.py leaves this folder out)."""
