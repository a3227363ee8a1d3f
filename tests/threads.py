"""Running a function in several threads at once, for the concurrency tests."""

from __future__ import annotations

import threading


def race(n, fn):
    """Run fn(i) in n threads released together; return results or exceptions."""
    barrier = threading.Barrier(n)
    out = [None] * n

    def run(i):
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # collected for the assertions
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out
