"""Issue 25, N6: an answer that did not read its body (404, 405, 415, 413) says
`Connection: close` and closes the connection, so that neither what is left of the body
nor the body watchdog can take the next request on it. Real regress server on loopback:
raw sockets, and a kept-alive client (requests.Session) interleaving such answers with
valid requests past the old body deadline."""

from __future__ import annotations

import time

import pytest
import requests

from tests.function_clients import Server
from tests.transport_clients import (RECORD, VALID, answer, one_response, post_head, send)

BODY_TIMEOUT = 3  # before the fix the unread body's connection was cut this long after


@pytest.fixture(scope="module")
def server(trained_store):
    env = {"MODEL_STORE": str(trained_store), "REFRESH_SECONDS": "3600", "THREADS": "4",
           "BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT), "MAX_BODY_BYTES": "100000"}
    with Server("regress", env) as running:
        yield running


UNREAD = {
    404: post_head("/nope", len(VALID)) + VALID,
    405: post_head("/health", len(VALID)) + VALID,
    415: post_head("/predict", len(VALID), "text/plain") + VALID,
    413: post_head("/predict", 200_000) + VALID,
}


@pytest.mark.parametrize("status", sorted(UNREAD))
def test_n6_an_answer_that_left_its_body_unread_closes_the_connection(server, status):
    sock = send(server.port, UNREAD[status])
    code, headers, _ = one_response(sock)
    assert code == status
    assert headers["connection"] == "close"  # before: keep-alive
    seconds, rest = answer(sock, timeout=10)
    sock.close()
    assert rest in (b"", b"<reset>") and seconds < 3


def test_n6_a_read_body_keeps_the_connection_alive(server):
    sock = send(server.port, post_head("/predict", len(VALID)) + VALID)
    code, headers, _ = one_response(sock)
    assert (code, headers["connection"]) == (200, "keep-alive")
    sock.sendall(post_head("/predict", len(VALID)) + VALID)
    assert one_response(sock)[0] == 200
    sock.close()


def test_n6_valid_requests_interleaved_with_unread_4xx_on_a_kept_alive_client_all_answer(server):
    # Before: the connection of a 404 stayed alive and the body watchdog shut it
    # BODY_TIMEOUT later, under whichever valid request was on it then.
    session = requests.Session()
    answered, began = 0, time.monotonic()
    while time.monotonic() - began < BODY_TIMEOUT + 2:
        r = session.post(server.url + "/nope", data=VALID, timeout=30,
                         headers={"Content-Type": "application/json"})
        assert r.status_code == 404
        for _ in range(3):
            r = session.post(server.url + "/predict", json={"records": [RECORD]}, timeout=30)
            assert r.status_code == 200, r.text
            answered += 1
    assert answered >= 6
