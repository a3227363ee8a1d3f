"""The body watchdog (velocast.serving.body) on real sockets: a deadline is enforced even when
it falls before the ones the watchdog already sleeps until, a disarmed one never
fires, an extended one fires at its new time, a tracked one shuts the read side only
(the reader can still write its 408) and an untracked one both, and many armed
deadlines do not wake it once each."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from velocast.serving.body import RESOLUTION_SECONDS, _Watchdog


def _shut_down(peer: socket.socket, within: float) -> bool:
    """True if `peer` reads an end of stream within `within` seconds (its other end shut
    down, or its own read side)."""
    peer.settimeout(within)
    try:
        return peer.recv(1) == b""
    except socket.timeout:
        return False


def test_an_earlier_deadline_is_enforced_while_a_later_one_is_pending():
    watchdog = _Watchdog()
    late, late_peer = socket.socketpair()
    early, early_peer = socket.socketpair()
    try:
        late_ticket = watchdog.arm(late, 60.0)
        started = time.monotonic()
        early_ticket = watchdog.arm(early, 0.2)
        assert _shut_down(early, within=10.0)  # its read side: the blocked read returns
        assert time.monotonic() - started >= 0.2
        assert watchdog.disarm(early_ticket) is True
        assert watchdog.disarm(late_ticket) is False
    finally:
        for s in (late, late_peer, early, early_peer):
            s.close()


def test_a_disarmed_deadline_never_fires():
    watchdog = _Watchdog()
    sock, peer = socket.socketpair()
    try:
        ticket = watchdog.arm(sock, 0.1)
        assert watchdog.disarm(ticket) is False
        assert not _shut_down(sock, within=0.1 + 3 * RESOLUTION_SECONDS)
    finally:
        sock.close()
        peer.close()


def test_arming_later_deadlines_does_not_wake_the_watchdog_each_time():
    watchdog = _Watchdog()
    wakeups = []
    condition_wait = threading.Condition.wait

    class CountingCondition(threading.Condition):
        def wait(self, timeout=None):
            wakeups.append(timeout)
            return condition_wait(self, timeout)

    watchdog._wake = CountingCondition(watchdog._lock)
    sock, peer = socket.socketpair()
    try:
        for _ in range(200):
            watchdog.disarm(watchdog.arm(sock, 30.0))
            time.sleep(0.001)  # as between requests: the watchdog could run if woken
        time.sleep(0.2)
        # The first arm starts the thread, which sleeps until the first deadline; the
        # 199 later deadlines come after it and need no wakeup.
        assert len(wakeups) <= 3, len(wakeups)
    finally:
        sock.close()
        peer.close()


@pytest.fixture
def pair():
    sock, peer = socket.socketpair()
    yield sock, peer
    sock.close()
    peer.close()


def test_a_tracked_deadline_leaves_the_write_side_open_for_the_answer(pair):
    sock, peer = pair
    watchdog = _Watchdog()
    ticket = watchdog.arm(sock, 0.1)
    assert _shut_down(sock, within=10.0)
    assert watchdog.disarm(ticket) is True
    sock.sendall(b"HTTP/1.1 408")  # the 408 still goes out
    peer.settimeout(5)
    assert peer.recv(64) == b"HTTP/1.1 408"


def test_an_untracked_deadline_ends_the_connection_both_ways(pair):
    sock, peer = pair
    _Watchdog().arm(sock, 0.1, track=False)
    assert _shut_down(peer, within=10.0)


def test_an_extended_deadline_fires_at_its_new_time_not_the_first(pair):
    sock, _ = pair
    watchdog, started = _Watchdog(), time.monotonic()
    ticket = watchdog.arm(sock, 0.1)
    watchdog.extend(ticket, started + 1.0)
    assert _shut_down(sock, within=10.0)
    assert time.monotonic() - started >= 1.0
    assert watchdog.disarm(ticket) is True
