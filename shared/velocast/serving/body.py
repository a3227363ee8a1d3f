"""Reading a request within bounded time and memory.

Time: gunicorn's gthread workers read a request's head and body in the request's
thread, and functions-framework runs them with no timeout, so a handful of clients that
send part of a request and then stall held every thread (/health stopped answering). One
watchdog thread shuts down the read side of any head or body read that outlives its
deadline: the blocked read returns at once, the thread is free again (no thread per
request), and the write side stays open for the 408 (issue 25, N7: a full shutdown cut
the connection before the documented 408 could be written).

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

from velocast.core.errors import ApiError

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
        self._extended: dict[int, float] = {}  # a later deadline, re-queued when the old one pops
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, seconds: float, track: bool = True) -> int:
        """Shut `sock` down in `seconds` unless disarmed; untracked ones cannot be. A tracked
        deadline shuts down the read side only, so that the reader can still answer (408);
        an untracked one ends the connection."""
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

    def extend(self, ticket: int, due: float) -> None:
        """Move a tracked deadline later, to `due` (time.monotonic()): a body whose length
        is unknown earns time as its bytes arrive. No wakeup: the old deadline comes first."""
        with self._lock:
            if ticket not in self._expired:
                self._extended[ticket] = due

    def disarm(self, ticket: int) -> bool:
        """True if the deadline passed first (the socket was shut down)."""
        with self._lock:
            self._extended.pop(ticket, None)
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
                    later = self._extended.pop(ticket, None)
                    if later is not None and later > now:
                        heapq.heappush(self._heap, (later, ticket, sock, track))
                        continue
                    if track:
                        self._expired.add(ticket)
                    try:
                        sock.shutdown(socket.SHUT_RD if track else socket.SHUT_RDWR)
                    except OSError:
                        pass  # the client closed it already
                self._wake.wait(max(self._heap[0][0] - now, RESOLUTION_SECONDS)
                                if self._heap else None)


WATCHDOG = _Watchdog()


# A body gets a grace period plus the time it needs at a slow client's rate, capped by
# BODY_TIMEOUT_SECONDS: with a flat 10 s, 8 stalled 1 KB bodies (as many as THREADS)
# made every other request wait up to 10 s (bench/attack.json, load test: 80 requests
# in 20 s against 25,343 without them). A chunked body's length is unknown until it
# ends, so it earns its time as it comes: GRACE_SECONDS plus what has arrived at
# MIN_BYTES_PER_SECOND (a flat BODY_TIMEOUT_SECONDS for it gave legitimate requests beside
# 8 stalled chunked bodies a p50 of 4.64 s, issue 25 N7). Read in CHUNKED_PIECE_BYTES
# pieces so that a client at the minimal rate never waits on a piece longer than the grace.
GRACE_SECONDS = 2.0
MIN_BYTES_PER_SECOND = 100_000
CHUNKED_PIECE_BYTES = 64 * 1024


def deadline(content_length: int | None, timeout: float) -> float:
    """Seconds a body of `content_length` bytes gets; for a chunked one (None), the time
    it gets before its first byte (it earns more as bytes arrive, see `read`)."""
    return min(timeout, GRACE_SECONDS + (content_length or 0) / MIN_BYTES_PER_SECOND)


def read(request, limit: int, timeout: float) -> tuple[bytes, bool]:
    """Up to limit + 1 bytes of the body, and whether its deadline cut it short."""
    sock = request.environ.get("gunicorn.socket")
    if sock is None or timeout <= 0:  # in-process test clients: nothing can stall
        return request.stream.read(limit + 1), False
    length = request.content_length
    started = time.monotonic()
    ticket = WATCHDOG.arm(sock, deadline(length, timeout))
    try:
        if length:
            data = request.stream.read(limit + 1)
        else:
            data = _read_chunked(request.stream, limit, ticket, started, timeout)
    except Exception:  # noqa: BLE001  (a shut-down or reset socket, whatever the layer says)
        data = b""
    finally:
        expired = WATCHDOG.disarm(ticket)
    return data, expired


def _read_chunked(stream, limit: int, ticket: int, started: float, timeout: float) -> bytes:
    pieces, received = [], 0
    while received <= limit:
        piece = stream.read(min(CHUNKED_PIECE_BYTES, limit + 1 - received))
        if not piece:
            break
        pieces.append(piece)
        received += len(piece)
        WATCHDOG.extend(ticket, started + min(timeout, GRACE_SECONDS
                                              + received / MIN_BYTES_PER_SECOND))
    return b"".join(pieces)


# After an answer that left its body unread the connection closes ("Connection: close",
# velocast.serving.transport); gunicorn then lingers on the read side for up to 2 s on its main
# thread (gunicorn.util.close_graceful), where it accepts every connection. The linger
# is cut this soon after the answer, which is written well before (under a millisecond, unloaded).
UNREAD_LINGER_SECONDS = 1.0


def cut_unread(request) -> None:
    """After refusing a body unread: end the connection shortly after the answer, so that
    neither a worker thread nor gunicorn's main loop waits on what is left of the body."""
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        WATCHDOG.arm(sock, UNREAD_LINGER_SECONDS, track=False)


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


def check_count(records, limit: int) -> None:
    """At most `limit` records (calls, instances) per request: 413 otherwise."""
    if isinstance(records, list) and len(records) > limit:
        raise ApiError(413, "too_many_records",
                       f"{len(records):,} records; the limit is {limit:,} per request")
