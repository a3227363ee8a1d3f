"""Reading a request body within bounded time and memory.

Time: gunicorn's gthread workers read the body in the request's thread, and
functions-framework runs them with no timeout, so a handful of clients that send
headers and then stall held every thread (/health stopped answering). One watchdog
thread shuts down the socket of any body read that outlives its deadline: the blocked
read returns at once and the thread is free again (no thread per request).

Memory: a body within MAX_BODY_BYTES can still cost 40-50 times its size once parsed
(10 MB of `[[]],` padding took a worker from 90 to 550 MB), so the JSON structure is
budgeted per allowed record before parsing: `structure_error` counts containers and
separators with bytes.count, ~0.1 ms per MB.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import socket
import threading
import time

# Per record: an object, a coordinate list and the request's own containers...
CONTAINERS_PER_RECORD, CONTAINER_SLACK = 4, 64
# ... and its separators: the export's 16 columns give 16 commas, a coordinate pair one.
COMMAS_PER_RECORD, COMMA_SLACK = 40, 1_000
# The watchdog sleeps at least this long between wakeups, so a deadline may be enforced
# this much late: waking for every request (to re-arm, then to drop its cancelled
# deadline) handed the GIL to the watchdog twice per request.
RESOLUTION_SECONDS = 0.1


# glibc's mallopt parameter number (malloc.h).
M_MMAP_THRESHOLD = -3


def return_freed_bodies_to_the_os() -> None:
    """glibc raises its mmap threshold to the largest block freed (up to 32 MiB), so once a
    10 MB body was freed, later ones come from the threads' heaps, which keep the memory:
    5 rounds of 8 refused 10 MB bodies left a worker at 233 MB instead of 121 MB
    (bench/attack.json). A fixed 128 KiB threshold (glibc's default, made static) keeps
    large blocks mmapped, given back when freed: 111 MB after the same 5 rounds."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, ...): nothing to tune
        return
    mallopt(M_MMAP_THRESHOLD, 128 * 1024)


return_freed_bodies_to_the_os()


class _Watchdog:
    def __init__(self):
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, socket.socket, bool]] = []
        self._cancelled: set[int] = set()   # finished in time; dropped when their deadline pops
        self._expired: set[int] = set()     # shut down; read by disarm
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, seconds: float, track: bool = True) -> int:
        """Shut `sock` down in `seconds` unless disarmed; untracked ones cannot be."""
        ticket = next(self._ids)
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + seconds, ticket, sock, track))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="velocast-body-watchdog",
                                                daemon=True)
                self._thread.start()
            elif self._heap[0][1] == ticket:  # due before what the watchdog sleeps until
                self._wake.notify()
        return ticket

    def disarm(self, ticket: int) -> bool:
        """True if the deadline passed first (the socket was shut down)."""
        with self._lock:
            if ticket in self._expired:
                self._expired.discard(ticket)
                return True
            self._cancelled.add(ticket)
            return False

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, ticket, sock, track = heapq.heappop(self._heap)
                    if ticket in self._cancelled:
                        self._cancelled.discard(ticket)
                        continue
                    if track:
                        self._expired.add(ticket)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # the client closed it already
                self._wake.wait(max(self._heap[0][0] - now, RESOLUTION_SECONDS)
                                if self._heap else None)


WATCHDOG = _Watchdog()


# A body gets a grace period plus the time it needs at a slow client's rate, capped by
# BODY_TIMEOUT_SECONDS: with a flat 10 s, 8 stalled 1 KB bodies (as many as THREADS)
# made every other request wait up to 10 s (bench/attack.json, load test: 80 requests
# in 20 s against 25,343 without them).
GRACE_SECONDS = 2.0
MIN_BYTES_PER_SECOND = 100_000


def deadline(content_length: int | None, timeout: float) -> float:
    if not content_length:  # chunked: its length is unknown until it ends
        return timeout
    return min(timeout, GRACE_SECONDS + content_length / MIN_BYTES_PER_SECOND)


def read(request, limit: int, seconds: float) -> tuple[bytes, bool]:
    """Up to limit + 1 bytes of the body, and whether the deadline cut it short."""
    sock = request.environ.get("gunicorn.socket")
    if sock is None or seconds <= 0:  # in-process test clients: nothing can stall
        return request.stream.read(limit + 1), False
    ticket = WATCHDOG.arm(sock, seconds)
    try:
        data = request.stream.read(limit + 1)
    except Exception:  # noqa: BLE001  (a shut-down or reset socket, whatever the layer says)
        data = b""
    finally:
        expired = WATCHDOG.disarm(ticket)
    return data, expired


def cut_unread(request, seconds: float) -> None:
    """After refusing a body unread: gunicorn drains what is left of it before the next
    request on the connection (a declared 10 GB held a thread for as long as bytes came);
    the socket is shut down `seconds` after the answer at the latest."""
    sock = request.environ.get("gunicorn.socket")
    if sock is not None and seconds > 0:
        WATCHDOG.arm(sock, seconds, track=False)


def structure_error(raw: bytes, max_records: int) -> str | None:
    containers = raw.count(b"[") + raw.count(b"{")
    allowed = CONTAINERS_PER_RECORD * max_records + CONTAINER_SLACK
    if containers > allowed:
        return (f"body holds {containers:,} JSON arrays or objects; at most {allowed:,} "
                f"for {max_records:,} records")
    commas = raw.count(b",")
    allowed = COMMAS_PER_RECORD * max_records + COMMA_SLACK
    if commas > allowed:
        return f"body holds {commas:,} JSON values; at most {allowed:,} for {max_records:,} records"
    return None
