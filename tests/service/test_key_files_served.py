"""Issue 25, N11 and N12, on a real regress server whose client keys come from a file
(API_KEYS_FILE, as the cloud mounts the secret): comment and blank lines are not keys,
and a key file whose read would block (a FIFO) fails every request at once with 503
instead of parking threads."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.common import Workers
from tests.function_clients import Server
from tests.transport_clients import RECORD
from velocast.serving import auth


def _post(server, key: str) -> int:
    return requests.post(server.url + "/predict", json={"records": [RECORD]}, timeout=30,
                         headers={"X-API-Key": key}).status_code


def _threads(server) -> int:
    total = 0
    for pid in Workers(server).pids():
        with open(f"/proc/{pid}/status") as f:
            total += sum(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return total


def test_n11_comment_and_blank_lines_of_a_key_file_are_not_keys(trained_store, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-12-01: the old key goes next week\n\n"
                    "  # indented comment\nclient-key-1\n\n", encoding="utf-8")
    env = {"MODEL_STORE": str(trained_store), "REFRESH_SECONDS": "3600",
           "API_KEYS_FILE": str(keys)}
    with Server("regress", env) as server:
        assert _post(server, "client-key-1") == 200
        for not_a_key in ("# rotated 2026-12-01: the old key goes next week",
                          "# indented comment", "#"):
            assert _post(server, not_a_key) == 403  # before: 200 for the first two


def test_n12_a_key_file_that_would_block_fails_at_once_and_parks_no_thread(trained_store,
                                                                           tmp_path):
    keys = tmp_path / "keys"
    os.mkfifo(keys)  # opened for reading, a FIFO waits for a writer: forever
    env = {"MODEL_STORE": str(trained_store), "REFRESH_SECONDS": "3600",
           "API_KEYS_FILE": str(keys), "SECRET_TTL_SECONDS": "0",
           "THREADS": "2"}  # the first burst starts both pool threads: later growth is parked reads
    with Server("regress", env) as server:
        def burst() -> float:
            began = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda _: _post(server, "client-key-1"), range(8)))
            assert statuses == [503] * 8
            return time.monotonic() - began

        burst()
        before = _threads(server)
        for _ in range(2):
            time.sleep(auth.FAILURE_PAUSE_SECONDS + 0.2)  # the next request reads again
            assert burst() < auth.READ_TIMEOUT_SECONDS  # before: 5 s, then 10 s each
        assert _threads(server) <= before + 1  # before: 10 -> 14, for good
        # A regular file again: served after the failure pause.
        keys.unlink()
        keys.write_text("client-key-1\n", encoding="utf-8")
        time.sleep(auth.FAILURE_PAUSE_SECONDS + 0.2)
        assert _post(server, "client-key-1") == 200
        assert _threads(server) <= before + 1
