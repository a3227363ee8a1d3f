"""Developer tooling for the local runner, the tests and the bench: never shipped.

scripts/package.py leaves this package out of the function bundles (as it does train/)
and refuses runtime code that imports it.

- `velocast.dev.servers`: start a function under functions-framework on a loopback
  port in its own process group, wait until it answers, stop the whole group.
- `velocast.dev.venvs`: a fresh venv holding one requirements.txt and nothing else,
  and what it weighs once installed.
- copying a store (registry entries last) is publishing: `velocast.train.publish.copy_store`.
"""
