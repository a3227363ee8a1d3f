"""The body watchdog (velocast.body) on real sockets: a deadline is enforced even when
it falls before the ones the watchdog already sleeps until, a disarmed one never
fires, and many armed deadlines do not wake it once each."""

from __future__ import annotations

import socket
import threading
import time

from velocast.body import RESOLUTION_SECONDS, _Watchdog


def _shut_down(peer: socket.socket, within: float) -> bool:
    """True if `peer`'s other end was shut down within `within` seconds."""
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
        assert _shut_down(early_peer, within=10.0)
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
        assert not _shut_down(peer, within=0.1 + 3 * RESOLUTION_SECONDS)
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
