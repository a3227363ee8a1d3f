"""Issue 25, N5 and N7: a request that stops part-way is cut within the body's grace
(velocast.serving.body.GRACE_SECONDS, 2 s), whether it stopped in its head, in a chunked body or
in a length-declared one, and the 408 reaches the client before the close; a chunked
body that keeps coming at the minimal rate is not cut. Real regress server on loopback,
raw sockets."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from tests.function_clients import Server
from tests.transport_clients import (RECORD, STALLED_CHUNKED, STALLED_HEAD, answer,
                                     post_head, send, status_line)
from velocast.serving.body import GRACE_SECONDS, MIN_BYTES_PER_SECOND

THREADS = 4
BODY_TIMEOUT = 10  # the default: a stall cut at the grace is cut well before it


@pytest.fixture(scope="module")
def server(trained_store):
    env = {"MODEL_STORE": str(trained_store), "REFRESH_SECONDS": "3600",
           "THREADS": str(THREADS), "BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT)}
    with Server("regress", env) as running:
        yield running


def _stalled(server, data: bytes, count: int):
    return [send(server.port, data) for _ in range(count)]


def test_n5_a_stalled_request_head_gets_its_408_and_the_close(server):
    # Before: no deadline on the head; the connection stayed open, its thread held.
    sock = send(server.port, STALLED_HEAD)
    seconds, data = answer(sock, timeout=BODY_TIMEOUT + 5)
    sock.close()
    assert status_line(data) == b"HTTP/1.1 408 Request Timeout", data[:300]
    assert b"Connection: close" in data and b'"request_timeout"' in data
    assert seconds < GRACE_SECONDS + 2


def test_n5_health_answers_beside_as_many_stalled_heads_as_threads(server):
    socks = _stalled(server, STALLED_HEAD, THREADS)
    try:
        time.sleep(0.3)  # every thread is now reading a head that will not come
        began = time.monotonic()
        assert requests.get(server.url + "/health", timeout=30).status_code == 200
        assert time.monotonic() - began < GRACE_SECONDS + 1.5
    finally:
        for sock in socks:
            sock.close()


def test_n5_a_head_sent_a_byte_at_a_time_is_cut_at_the_same_deadline(server):
    # Slowloris: the head keeps coming, too slowly to ever end; an idle timeout would not
    # cut it, the head's deadline does.
    sock = send(server.port, b"P")
    began, cut = time.monotonic(), False
    while time.monotonic() - began < GRACE_SECONDS + 5:
        try:
            sock.sendall(b"O")
            time.sleep(0.2)
        except OSError:
            cut = True
            break
        sock.settimeout(0.01)
        try:
            if sock.recv(1024):
                cut = True
                break
        except OSError:
            pass
    sock.close()
    assert cut and time.monotonic() - began < GRACE_SECONDS + 2


def test_n7_a_stalled_chunked_body_gets_its_408_at_the_grace_not_the_body_timeout(server):
    # Before: a chunked body got the whole BODY_TIMEOUT, and the 408 never came (the
    # watchdog shut the socket down both ways before it could be written).
    sock = send(server.port, STALLED_CHUNKED)
    seconds, data = answer(sock, timeout=BODY_TIMEOUT + 5)
    sock.close()
    assert status_line(data) == b"HTTP/1.1 408 REQUEST TIMEOUT", data[:300]
    assert b"Connection: close" in data
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert seconds < GRACE_SECONDS + 2


def test_n7_a_stalled_length_declared_body_gets_its_408_too(server):
    sock = send(server.port, post_head("/predict", 1000) + b'{"records": [')
    seconds, data = answer(sock, timeout=BODY_TIMEOUT + 5)
    sock.close()
    assert status_line(data) == b"HTTP/1.1 408 REQUEST TIMEOUT", data[:300]
    assert seconds < GRACE_SECONDS + 2


def test_n7_requests_beside_stalled_chunked_bodies_wait_at_most_the_grace(server):
    socks = _stalled(server, STALLED_CHUNKED, THREADS)
    try:
        time.sleep(0.3)
        began = time.monotonic()
        r = requests.post(server.url + "/predict", json={"records": [RECORD]}, timeout=30)
        assert r.status_code == 200, r.text
        assert time.monotonic() - began < GRACE_SECONDS + 1.5
    finally:
        for sock in socks:
            sock.close()


def test_a_chunked_body_that_keeps_coming_at_the_minimal_rate_is_not_cut(server):
    # ~1.5x the minimal rate for about 3 s: past the grace, within what it has earned.
    pad = "x" * int(MIN_BYTES_PER_SECOND * 4.5)
    body = json.dumps({"records": [RECORD], "note": pad}).encode()
    step, pause = int(MIN_BYTES_PER_SECOND * 1.5 * 0.25), 0.25

    def chunks():
        for i in range(0, len(body), step):
            yield body[i:i + step]
            time.sleep(pause)

    began = time.monotonic()
    r = requests.post(server.url + "/predict", data=chunks(), timeout=60,
                      headers={"Content-Type": "application/json"})
    assert time.monotonic() - began > GRACE_SECONDS + 0.5  # it did outlast the grace
    assert r.status_code == 200, r.text


def test_concurrent_stalls_of_every_kind_are_all_answered(server):
    results = []

    def one(data):
        sock = send(server.port, data)
        results.append(status_line(answer(sock, timeout=BODY_TIMEOUT + 10)[1]))
        sock.close()

    kinds = [STALLED_HEAD, STALLED_CHUNKED, post_head("/predict", 1000) + b"{"] * 2
    threads = [threading.Thread(target=one, args=(k,)) for k in kinds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(line.startswith(b"HTTP/1.1 408") for line in results), results
