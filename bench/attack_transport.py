"""Issue 25's done criterion on a real regress function on loopback, before and after the
transport fixes, side by side: `python -m bench.attack_transport` (= make attack-transport)
writes bench/attack_transport.json and prints the table.

Per side ("before" is BEFORE_COMMIT, bench.versions.extract, its velocast on PYTHONPATH;
"after" this tree), for each THREADS value (--threads; 8 is the deployed concurrency,
32 what `scripts/local.py serve` runs with), on a fresh server:
  - 8 connections that send `POST /predict HTTP/1.1\\r\\nHost: x\\r\\n` and stop, and 8
    that send a chunked body's first bytes and stop, held open the whole time (re-opened
    whenever the server answers or closes one);
  - GET /health every 0.25 s on a new connection: its latency (capped at --cap);
  - a 20 s load burst: --clients kept-alive clients posting one valid record, and
    --mixed kept-alive clients alternating 404/415 answers that leave their body unread
    with valid requests on the same connection (N6).
"lost" is a valid request that got no answer (an error or a timeout) or not a 200. Figures
are reported, never asserted (bench/README.md).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import select
import socket
import threading
import time
from pathlib import Path

from bench.common import ADMIN_KEY, API_KEY, BENCH, ROOT, percentile, run_header, say
from bench.versions import extract
from velocast.dev.bodies import OLD_RECORD
from velocast.dev.servers import FunctionServer, function_source

BEFORE_COMMIT = "ba6ade2"  # main when issue 25 was filed
HEADERS = {"Content-Type": "application/json", "X-API-Key": API_KEY}
VALID = json.dumps({"records": [OLD_RECORD]}, ensure_ascii=False).encode()
STALLS = {
    "head": b"POST /predict HTTP/1.1\r\nHost: x\r\n",
    "chunked": (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-API-Key: " + API_KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\n{\"rec"),
}
UNREAD = [("POST", "/nope", {"Content-Type": "application/json"}),
          ("POST", "/predict", {"Content-Type": "text/plain", "X-API-Key": API_KEY})]


def start(tree: Path | None, store: str, threads: int, log: Path) -> FunctionServer:
    env = {**os.environ, "MODEL_STORE": store, "API_KEYS": API_KEY, "ADMIN_KEY": ADMIN_KEY,
           "THREADS": str(threads), "REFRESH_SECONDS": "3600", "OMP_NUM_THREADS": "1"}
    source = function_source("regress")
    if tree is not None:
        source = tree / "functions" / "regress" / "main.py"
        env["PYTHONPATH"] = str(tree / "shared")
    server = FunctionServer("regress", source=source, env=env, cwd=tree or ROOT, log=log)
    server.start(timeout=120)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.request("POST", "/predict", body=VALID, headers=HEADERS)
    assert conn.getresponse().status == 200, "warm-up failed"
    conn.close()
    return server


def stall_keeper(port: int, per_kind: int, stop: threading.Event, counts: dict) -> None:
    def open_one(kind):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(STALLS[kind])
        return sock

    socks = {open_one(kind): kind for kind in STALLS for _ in range(per_kind)}
    while not stop.is_set():
        readable, _, _ = select.select(list(socks), [], [], 0.2)
        for sock in readable:  # an answer or the close: note which, re-open
            data = b""
            with contextlib.suppress(OSError):
                data = sock.recv(65536)
            status = data.split(b" ", 2)[1:2]
            counts[(socks[sock], status[0].decode("latin-1") if status else "closed")] += 1
            kind = socks.pop(sock)
            sock.close()
            with contextlib.suppress(OSError):
                socks[open_one(kind)] = kind
    for sock in socks:
        sock.close()


def health_prober(port: int, cap: float, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=cap)
            conn.request("GET", "/health")
            status = conn.getresponse().status
            conn.close()
        except (OSError, http.client.HTTPException):
            status = None
        out.append((round(time.perf_counter() - began, 3), status))
        stop.wait(0.25)


def client(port: int, cap: float, mixed: bool, stop: threading.Event, out: list) -> None:
    """Valid requests on one kept-alive connection (re-opened only when closed); a mixed
    client sends an unread-body 4xx before each valid one."""
    conn, n = http.client.HTTPConnection("127.0.0.1", port, timeout=cap), 0
    while not stop.is_set():
        calls = [("POST", "/predict", HEADERS, True)]
        if mixed:
            method, path, headers = UNREAD[n % len(UNREAD)]
            calls.insert(0, (method, path, headers, False))
        n += 1
        for method, path, headers, valid in calls:
            began = time.perf_counter()
            try:
                conn.request(method, path, body=VALID, headers=headers)
                response = conn.getresponse()
                response.read()
                outcome = response.status
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=cap)
            out.append((valid, mixed, round(time.perf_counter() - began, 3), outcome))
    conn.close()


def run(tree, store, threads, args, log: Path) -> dict:
    server = start(tree, store, threads, log)
    stop, counts = threading.Event(), collections.Counter()
    health, requests = [], []
    try:
        keeper = threading.Thread(target=stall_keeper,
                                  args=(server.port, args.stalled, stop, counts))
        keeper.start()
        time.sleep(0.5)
        workers = [threading.Thread(target=health_prober, args=(server.port, args.cap, stop, health))]
        workers += [threading.Thread(target=client, args=(server.port, args.cap, False, stop, requests))
                    for _ in range(args.clients)]
        workers += [threading.Thread(target=client, args=(server.port, args.cap, True, stop, requests))
                    for _ in range(args.mixed)]
        for t in workers:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in [keeper, *workers]:
            t.join()
    finally:
        server.close()
    valid = [r for r in requests if r[0]]
    unread = collections.Counter(str(o) for v, _, _, o in requests if not v)
    outcomes = collections.Counter(str(o) for _, _, _, o in valid)
    lost = [r for r in valid if r[3] != 200]
    seconds = [s for s, _ in health]
    return {"threads": threads, "seconds": args.seconds, "stalled_per_kind": args.stalled,
            "health_probes": len(health),
            "health_failed": sum(1 for _, st in health if st != 200),
            "health_max_s": max(seconds, default=None),
            "health_p50_s": round(percentile(seconds, 50), 3) if seconds else None,
            "health_over_2s": sum(1 for s in seconds if s > 2.0),
            "valid_requests": len(valid), "valid_ok": outcomes.get("200", 0),
            "valid_lost": len(lost), "valid_lost_on_mixed_clients": sum(1 for r in lost if r[1]),
            "valid_outcomes": dict(outcomes),
            "valid_p50_ms": round(1000 * percentile([r[2] for r in valid], 50), 1) if valid else None,
            "valid_max_s": max((r[2] for r in valid), default=None),
            "unread_4xx_outcomes": dict(unread),
            "stalls_answered": {f"{k}:{v}": n for (k, v), n in sorted(counts.items())}}


def table(result: dict) -> str:
    rows = [("side", "THREADS", "/health max s", "> 2 s", "failed", "valid", "lost",
             "lost (mixed)", "p50 ms", "unread 4xx", "stalls answered")]
    for side in ("before", "after"):
        for r in result.get(side, []):
            rows.append((side, r["threads"], r["health_max_s"], r["health_over_2s"],
                         r["health_failed"], r["valid_requests"], r["valid_lost"],
                         r["valid_lost_on_mixed_clients"], r["valid_p50_ms"],
                         sum(r["unread_4xx_outcomes"].values()),
                         ", ".join(f"{k} {n}" for k, n in r["stalls_answered"].items())))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.attack_transport", description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="a model store both sides can serve")
    p.add_argument("--before", default=BEFORE_COMMIT)
    p.add_argument("--no-before", action="store_true", help="this tree only")
    p.add_argument("--threads", default="8,32", help="THREADS values, comma-separated")
    p.add_argument("--stalled", type=int, default=8, help="stalled connections of each kind")
    p.add_argument("--clients", type=int, default=8, help="clients sending valid requests only")
    p.add_argument("--mixed", type=int, default=4, help="clients interleaving unread-body 4xx")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--cap", type=float, default=10.0, help="s to wait for any answer")
    p.add_argument("--out", type=Path, default=BENCH / "attack_transport.json")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logs = BENCH / "out" / "attack-transport-logs"
    logs.mkdir(parents=True, exist_ok=True)
    result = run_header({k: str(v) for k, v in vars(args).items() if k != "out"})
    load_start = result["machine"]["loadavg_start"]
    sides = [("after", None)]
    if not args.no_before:
        sides.insert(0, ("before", extract(args.before, BENCH / "out" / "versions").root))
    for side, tree in sides:
        result[side] = []
        for threads in (int(t) for t in args.threads.split(",")):
            say(f"{side}: THREADS={threads}, {args.stalled}+{args.stalled} stalled, "
                f"{args.clients}+{args.mixed} clients x {args.seconds:g} s")
            result[side].append(run(tree, args.store, threads, args,
                                    logs / f"{side}-{threads}.log"))
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["table"] = (text := table(result)).splitlines()
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"machine: {os.cpu_count()} cores, load average {load_start[0]:.1f} -> "
          f"{result['machine']['loadavg_end'][0]:.1f} (shared: wall times are inflated)\n")
    print(text)
    say(f"wrote {args.out}; server logs in {logs}")


if __name__ == "__main__":
    main()
