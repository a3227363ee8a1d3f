"""Issue 10's attacks on a real regress function on loopback, before and after the
hardening, side by side: `python -m bench.attack` (= make attack) writes bench/attack.json
and bench/attack.png. "before" is BEFORE_COMMIT (bench.versions.extract, its velocast on
PYTHONPATH), "after" this tree, each with a store from its own trainer; both under
functions-framework, THREADS=8 (the deployed concurrency), default limits (10 MiB bodies,
10,000 records, 10 s body deadline). Per side:
  a. one valid record + a ~10 MB `"pad": [[[]], ...]` member, alone and 8 at once: statuses
     and the workers' RSS (the arbiter's children; sampled every 50 ms, VmHWM reset first);
  b. 8 connections sending headers (Content-Length: 1000) and part of a body: how long
     GET /health then takes (capped);
  c. a declared 10 GB body, bytes kept coming (paced: the before side buffers them):
     the first byte of the answer, when the server stops taking bytes;
  d. on a fresh server, 16 clients x 20 s of /predict + 8 stalled connections (re-opened
     when cut) + POST /refresh every second: 5xx, stuck requests, RSS start/peak/+5 s.
Figures are reported, never asserted (bench/README.md).
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
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.attack_report import chart, table
from bench.common import (ADMIN_KEY, API_KEY, BENCH, ROOT, SAMPLE, Workers, percentile,
                          run_header, say, sampling)
from bench.versions import Side, extract, train
from velocast.dev.bodies import OLD_RECORD
from velocast.dev.servers import FunctionServer, function_source, get_status

BEFORE_COMMIT = "50915b8"
THREADS = 8  # terraform's default concurrency per instance
HEADERS = {"Content-Type": "application/json", "X-API-Key": API_KEY}
VALID = json.dumps({"records": [OLD_RECORD]}, ensure_ascii=False).encode()


def padded_body(target_bytes: int) -> bytes:
    head = b'{"records": [' + json.dumps(OLD_RECORD, ensure_ascii=False).encode() + b'], "pad": ['
    items = (target_bytes - len(head) - 2) // 5
    return head + b",".join([b"[[]]"] * items) + b"]}"


def post_head(length: int, path: str = "/predict") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {API_KEY}\r\nContent-Length: {length}\r\n\r\n").encode()


# ------------------------------------------------------------------ servers and memory
def stores_for(args, before: Path) -> dict:
    """--store for both sides, else each side's own trainer on the synthetic sample
    (bench.versions.train: the model checks differ between the versions)."""
    if args.store:
        return {"before": args.store, "after": args.store}
    if not SAMPLE.exists():
        subprocess.run([sys.executable, "-m", "velocast.train.sample", "--out", str(SAMPLE)],
                       check=True, cwd=ROOT)
    work = BENCH / "out" / "attack-stores"
    work.mkdir(parents=True, exist_ok=True)
    return {side.name: train(side, SAMPLE, work) for side in
            (Side("before", before, args.before), Side("after", ROOT, "this tree"))}


def start(side: str, tree: Path | None, store: str, log_dir: Path, tag: str) -> FunctionServer:
    """regress from `tree` (None: this tree) on a free port, ready and warm (a 200)."""
    env = {**os.environ, "MODEL_STORE": store, "API_KEYS": API_KEY, "ADMIN_KEY": ADMIN_KEY,
           "THREADS": str(THREADS), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    source = function_source("regress")
    if tree is not None:
        source = tree / "functions" / "regress" / "main.py"
        env["PYTHONPATH"] = str(tree / "shared")  # wins over the editable install's finder
    server = FunctionServer("regress", source=source, env=env, cwd=tree or ROOT,
                            log=log_dir / f"{side}-{tag}.log").start(timeout=120)
    status, body = request(server.port, "POST", "/predict", VALID, timeout=120)
    if status != 200:
        server.close()
        raise RuntimeError(f"{side}: warm-up /predict gave {status}: {body[:300]!r}")
    return server


def request(port, method, path, body=None, timeout=30.0, headers=None) -> tuple[int, bytes]:
    with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)) as c:
        c.request(method, path, body=body, headers=headers or HEADERS)
        response = c.getresponse()
        return response.status, response.read()


# ------------------------------------------------------------------------ the attacks
def padding(server: FunctionServer, body: bytes, concurrent: int, cap: float,
            headers: dict | None = None) -> dict:
    workers = Workers(server)
    time.sleep(1)
    workers.reset_peak()
    start_mb = workers.rss()
    results: list = []

    def one():
        began = time.perf_counter()
        try:
            status, _ = request(server.port, "POST", "/predict", body, cap, headers)
        except OSError as exc:
            status = type(exc).__name__
        results.append((status, round(time.perf_counter() - began, 2)))

    with sampling(workers) as trace:
        threads = [threading.Thread(target=one) for _ in range(concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1)
    time.sleep(2)
    return {"concurrent": concurrent, "body_bytes": len(body),
            "statuses": dict(collections.Counter(str(s) for s, _ in results)),
            "slowest_s": max(s for _, s in results), "rss_start_mb": start_mb,
            "rss_peak_sampled_mb": max(mb for _, mb in trace), "vmhwm_mb": workers.rss("VmHWM:"),
            "rss_3s_after_mb": workers.rss(), "trace": trace[::2]}


def open_stalled(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(post_head(1000) + b'{"records": [')
    return sock


def stalled_health(server: FunctionServer, n: int, cap: float) -> dict:
    stalled = [open_stalled(server.port) for _ in range(n)]
    time.sleep(0.5)  # the worker picks them up
    began = time.perf_counter()
    try:
        status, answered = get_status(server.port, "/health", timeout=cap), \
            round(time.perf_counter() - began, 2)
    except OSError:
        status, answered = None, None
    finally:
        for sock in stalled:
            sock.close()
    began = time.perf_counter()  # once the stalled clients give up: back at once?
    with contextlib.suppress(OSError):
        get_status(server.port, "/health", timeout=cap)
    return {"stalled": n, "health_status": status, "health_seconds": answered, "cap_s": cap,
            "health_seconds_after_clients_gave_up": round(time.perf_counter() - began, 2)}


def huge_body(server: FunctionServer, cap: float, rate: int) -> dict:
    """10 GB declared, then `rate` bytes/s of spaces: when the answer's first byte comes,
    and when the server stops taking the bytes (a send fails)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=1)
    sock.sendall(post_head(10 * 10**9) + b"{")
    chunk, sent, began = b" " * 65536, 0, time.perf_counter()
    first = status_line = cut = None
    next_send, reading = began, True
    try:
        while (elapsed := time.perf_counter() - began) < cap + (first or 0):
            wait = max(0.0, next_send - time.perf_counter())
            if select.select([sock] if reading else [], [], [], wait)[0]:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if first is None:
                    first = round(elapsed, 2)
                    status_line = data.split(b"\r\n", 1)[0].decode("latin-1") or "(closed)"
                reading = bool(data)  # at EOF, only sending is left to watch
                continue
            try:
                sent += sock.send(chunk)
            except socket.timeout:
                pass  # the server is not reading: the buffers are full
            except OSError:
                cut = round(elapsed, 2)
                break
            next_send += len(chunk) / rate
    finally:
        sock.close()
    return {"declared_bytes": 10 * 10**9, "first_byte_s": first, "status_line": status_line,
            "cap_s": cap, "bytes_sent": sent, "pace_bytes_per_s": rate,
            "server_stopped_reading_after_s": cut}


def load_test(server: FunctionServer, clients: int, seconds: float, n_stalled: int,
              cap: float, stuck_after: float) -> dict:
    workers, stop = Workers(server), threading.Event()
    done: list[tuple[float, object]] = []
    refreshes: list = []
    cuts = [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=cap)
        while not stop.is_set():
            began = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=VALID, headers=HEADERS)
                response = conn.getresponse()
                response.read()
                outcome = response.status
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=cap)
            done.append((time.perf_counter() - began, outcome))
        conn.close()

    def stalled_keeper():
        socks = [open_stalled(server.port) for _ in range(n_stalled)]
        while socks and not stop.is_set():  # (a failed re-open ends it: the server is down)
            readable, _, _ = select.select(socks, [], [], 0.2)
            for sock in readable:  # an answer (408) or the server closed it: re-open
                with contextlib.suppress(OSError):
                    sock.recv(65536)
                sock.close()
                socks[socks.index(sock)] = open_stalled(server.port)
                cuts[0] += 1
        for sock in socks:
            sock.close()

    def refresher():
        while not stop.wait(1.0):
            began = time.perf_counter()
            try:
                outcome = request(server.port, "POST", "/refresh", b"", timeout=cap,
                                  headers={"X-API-Key": ADMIN_KEY})[0]
            except OSError as exc:
                outcome = type(exc).__name__
            refreshes.append((time.perf_counter() - began, outcome))

    time.sleep(1)
    rss_start = workers.rss()
    (keeper := threading.Thread(target=stalled_keeper)).start()
    time.sleep(0.5)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    threads.append(threading.Thread(target=refresher))
    with sampling(workers, 0.25) as trace:
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        keeper.join()
        for t in threads:
            t.join()
    time.sleep(5)
    rss_after = workers.rss()
    statuses = collections.Counter(str(o) for _, o in done)
    latencies = [s for s, _ in done]
    return {"clients": clients, "seconds": seconds, "stalled": n_stalled,
            "requests": len(done), "ok": statuses.get("200", 0), "statuses": dict(statuses),
            "5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
            "stuck_over_s": stuck_after,
            "stuck": sum(1 for s in latencies if s > stuck_after),
            "median_ms": round(1000 * percentile(latencies, 50), 1) if done else None,
            "p99_ms": round(1000 * percentile(latencies, 99), 1) if done else None,
            "max_s": round(max(latencies), 2) if done else None,
            "refreshes": dict(collections.Counter(str(o) for _, o in refreshes)),
            "refresh_max_s": round(max((s for s, _ in refreshes), default=0), 2),
            "stalled_cut_and_reopened": cuts[0], "rss_start_mb": rss_start,
            "rss_peak_mb": max(mb for _, mb in trace), "rss_5s_after_mb": rss_after,
            "rss_back_within_10pct": rss_after <= 1.1 * rss_start}


# ------------------------------------------------------------------------ one side
def run_side(side: str, tree: Path | None, store: str, args, log_dir: Path) -> dict:
    out: dict = {}
    server = start(side, tree, store, log_dir, "attacks")
    try:
        out["source"] = str(server.source)
        body = padded_body(args.pad_bytes)
        for n in (1, args.concurrent):
            say(f"{side}: padding attack x{n} ({len(body):,} bytes each)")
            out[f"padding_x{n}"] = padding(server, body, n, args.request_cap)
        if side == "after":  # does the memory the refused bodies took come back, or pile up?
            say(f"{side}: padding attack x{args.concurrent}, {args.repeat} more times")
            out["padding_repeated_rss_3s_after_mb"] = [
                padding(server, body, args.concurrent, args.request_cap)["rss_3s_after_mb"]
                for _ in range(args.repeat)]
            keyless = {"Content-Type": "application/json"}  # read before the key check: 401
            out["padding_keyless_repeated"] = [
                padding(server, body, args.concurrent, args.request_cap, keyless)
                for _ in range(args.repeat)]
            for one in out["padding_keyless_repeated"]:
                one.pop("trace")
        say(f"{side}: {args.stalled} stalled bodies, then GET /health (cap {args.cap:g} s)")
        out["stalled_health"] = stalled_health(server, args.stalled, args.cap)
        say(f"{side}: a declared 10 GB body (cap {args.cap:g} s)")
        out["huge_body"] = huge_body(server, args.cap, args.pace)
    finally:
        server.close()
    if side == "after" or not args.no_before_load:
        server = start(side, tree, store, log_dir, "load")
        try:
            say(f"{side}: load, {args.clients} clients x {args.load_seconds:g} s, "
                f"{args.stalled} stalled, a refresh per second")
            out["load"] = load_test(server, args.clients, args.load_seconds, args.stalled,
                                    args.cap, args.stuck_after)
            if side == "after":  # what the stalled connections cost: the same load without
                say(f"{side}: the same load without stalled connections")
                out["load_no_stalled"] = load_test(server, args.clients, args.load_seconds, 0,
                                                   args.cap, args.stuck_after)
        finally:
            server.close()
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.attack",
                                description="issue 10's attacks, before and after the hardening")
    p.add_argument("--store", help="a store both sides can serve (default: each side's "
                   "trainer on the synthetic sample, into bench/out/attack-stores)")
    p.add_argument("--before", default=BEFORE_COMMIT, help="the commit before the hardening")
    for name, default, what in (("pad-bytes", 10_000_000, "padding body size"),
                                ("concurrent", 8, "padding requests at once"),
                                ("stalled", 8, "stalled connections"), ("clients", 16, "d."),
                                ("cap", 30.0, "s to wait for an answer (b., c., d.)"),
                                ("repeat", 4, "a. x8 again on the after side"),
                                ("load-seconds", 20.0, "d."), ("stuck-after", 15.0, "d. (s)")):
        p.add_argument(f"--{name}", type=type(default), default=default, help=what)
    p.add_argument("--request-cap", type=float, default=180.0,
                   help="timeout of one padding request (the before side parses it slowly)")
    p.add_argument("--pace", type=int, default=2 * 2**20,
                   help="bytes/s of the 10 GB body (bounded: the before side buffers it)")
    p.add_argument("--no-before-load", action="store_true", help="run d. on after only")
    p.add_argument("--out", type=Path, default=BENCH / "attack.json")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    log_dir = BENCH / "out" / "attack-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    tree = extract(args.before, BENCH / "out" / "versions").root  # git archive, cached
    stores = stores_for(args, tree)
    result = run_header({"threads": THREADS, "stores": stores, "cap_s": args.cap,
                         **{k: v for k, v in vars(args).items()
                            if k not in ("out", "store", "cap")}},
                        note="shared with other jobs (other helpers' tests and benches); "
                             "times are wall clock and inflated by the load average")
    load_start = result["machine"]["loadavg_start"]
    result["before"] = run_side("before", tree, stores["before"], args, log_dir)
    result["after"] = run_side("after", None, stores["after"], args, log_dir)
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["table"] = (text := table(result)).splitlines()
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    chart(result, args.out.with_suffix(".png"))
    print(f"machine: {os.cpu_count()} cores, load average {load_start[0]:.1f} at the start, "
          f"{result['machine']['loadavg_end'][0]:.1f} at the end (shared with other jobs: "
          "wall times are inflated)\n")
    print(text)
    say(f"wrote {args.out} and {args.out.with_suffix('.png')}; server logs in {log_dir}")


if __name__ == "__main__":
    main()
