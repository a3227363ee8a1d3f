"""The benchmark against the old design: `make bench` runs bench/run.py."""
