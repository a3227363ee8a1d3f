"""Phase 3: HTTP. classify, regress and the old function (bench/old_design.py, target
predict_http) under functions-framework on loopback ports; closed-loop clients, one
keep-alive connection each, for a fixed duration; errors counted; server CPU per
request; serving RSS; a "cold burst" (a fresh instance whose first requests per model
type arrive together).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
import time
from pathlib import Path

from bench.common import (ADMIN_KEY, API_KEY, BENCH, FUNCTIONS, say, summarize,
                          tree_cpu_seconds, tree_memory)
from velocast.dev.servers import FunctionServer

HEADERS = {"Content-Type": "application/json", "X-API-Key": API_KEY}


def post(conn: http.client.HTTPConnection, body: bytes, path: str = "/predict") -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers=HEADERS)
    response = conn.getresponse()
    return response.status, response.read()


def velocast_server(name: str, store: str, env_extra: dict, log_dir: Path,
                    log_name: str | None = None) -> FunctionServer:
    """A velocast function on a free port, started (not yet ready)."""
    env = {**os.environ, "MODEL_STORE": store, "API_KEYS": API_KEY, "ADMIN_KEY": ADMIN_KEY,
           **env_extra}
    return FunctionServer(name, env=env, log=log_dir / (log_name or f"{name}.log")).spawn()


def old_server(model_uri: str, env_extra: dict, log_dir: Path) -> FunctionServer:
    """The old function, loading its pickle from `model_uri` at import, started."""
    env = {**os.environ, "OLD_MODEL_URI": model_uri, **env_extra}
    return FunctionServer("predict_http", source=BENCH / "old_design.py", env=env,
                          log=log_dir / "old.log").spawn()


def memory(server: FunctionServer) -> dict:
    return tree_memory(server.process.pid)


def first_200(server: FunctionServer, body: bytes, timeout: float = 120.0) -> dict:
    """Poll POST /predict until 200; times from process start to the socket accepting
    and to the first 200."""
    listen = None
    deadline = server.started_at + timeout
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}; "
                               f"see {server.log_path}")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.connect()
            if listen is None:
                listen = time.perf_counter() - server.started_at
            status, _ = post(conn, body)
            if status == 200:
                return {"listen_s": listen, "first_200_s": time.perf_counter() - server.started_at}
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()
        time.sleep(0.005)
    raise RuntimeError(f"{server.name} gave no 200 on /predict within {timeout:.0f} s; "
                       f"see {server.log_path}")


def load_run(port: int, body: bytes, clients: int, seconds: float, expect: int | None = None,
             rss_of: FunctionServer | None = None, rss_every: float = 0.0,
             cpu_of: FunctionServer | None = None) -> dict:
    """Closed loop: `clients` threads, each with its own keep-alive connection, send
    requests back to back for `seconds`. Every non-200 or failed request is an error."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    first_error: list[str] = []
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = latencies[i]
        barrier.wait()
        end = stop_at[0]
        while True:
            started = time.perf_counter()
            if started >= end:
                break
            try:
                status, payload = post(conn, body)
                elapsed = time.perf_counter() - started
                if status != 200:
                    errors[i] += 1
                    if not first_error:
                        first_error.append(f"HTTP {status}: {payload[:300]!r}")
                else:
                    mine.append(elapsed)
            except (OSError, http.client.HTTPException) as exc:
                errors[i] += 1
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    trace = []
    cpu_before = tree_cpu_seconds(cpu_of.process.pid) if cpu_of is not None else None
    began = time.perf_counter()
    stop_at[0] = began + seconds
    barrier.wait()
    if rss_of is not None:
        trace.append((0.0, memory(rss_of)["rss_mb"]))
        while rss_every and time.perf_counter() + rss_every < stop_at[0]:
            time.sleep(rss_every)
            trace.append((round(time.perf_counter() - began, 1), memory(rss_of)["rss_mb"]))
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    cpu_used = tree_cpu_seconds(cpu_of.process.pid) - cpu_before if cpu_of is not None else None
    if rss_of is not None:
        trace.append((round(elapsed, 1), memory(rss_of)["rss_mb"]))
    every = [x for per in latencies for x in per]
    result = {"clients": clients, "seconds": round(elapsed, 2), "requests": len(every),
              "errors": sum(errors), "requests_per_s": round(len(every) / elapsed, 1),
              **summarize(every)}
    if cpu_used is not None and every:
        # Server CPU per request: what the machine's load does not inflate much; on
        # a quiet machine 1 client's latency is about this plus the loopback round trip.
        result["server_cpu_ms_per_request"] = round(1000 * cpu_used / len(every), 3)
    if first_error:
        result["first_error"] = first_error[0]
    if expect is not None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        status, payload = post(conn, body)
        conn.close()
        n = len(json.loads(payload).get("predictions", [])) if status == 200 else -1
        if n != expect:
            result["errors"] += 1
            result.setdefault("first_error", f"check request: HTTP {status}, {n} predictions, "
                                             f"expected {expect}")
    if rss_of is not None:
        result["rss_trace_mb"] = trace
    result["_samples"] = every
    return result


def warm_up(servers: dict, models: dict, bodies: dict) -> int:
    """Every model type on each function, both body sizes: the errors."""
    errors = 0
    conn = {fn: http.client.HTTPConnection("127.0.0.1", servers[fn].port, timeout=60)
            for fn in FUNCTIONS}
    for (task, model_type) in sorted(models):
        for size in ("1", "1000"):
            body = json.dumps({"records": bodies[size], "model_type": model_type},
                              ensure_ascii=False).encode()
            status, payload = post(conn[task], body)
            n = len(json.loads(payload).get("predictions", [])) if status == 200 else -1
            if status != 200 or n != len(bodies[size]):
                errors += 1
                say(f"WARNING: warm-up {task}/{model_type}: HTTP {status} {payload[:200]!r}")
    for c in conn.values():
        c.close()
    return errors


def http_runs(servers: dict, bodies: dict, body_bytes: dict, clients: int,
              seconds: float) -> tuple[dict, dict, int]:
    """1 and `clients` clients, 1- and 1,000-record bodies, on each server: the results,
    latency samples for the chart (at most ~5,000 a run) and velocast's errors."""
    results: dict = {}
    samples_http: dict = {"1": {}, "1000": {}}
    errors = 0
    for name in ("regress", "classify", "old"):
        results[name] = {}
        for size in ("1", "1000"):
            results[name][size] = {}
            for n_clients in (1, clients):
                say(f"HTTP: {name}, {size} record(s), {n_clients} client(s), {seconds:g} s")
                result = load_run(servers[name].port, body_bytes[size], n_clients, seconds,
                                  expect=len(bodies[size]), cpu_of=servers[name])
                samples = result.pop("_samples")
                samples_http[size][f"{name} {n_clients}cl"] = samples[:: max(1, len(samples) // 5000)]
                results[name][size][str(n_clients)] = result
                if name != "old":
                    errors += result["errors"]
    return results, samples_http, errors


def cold_burst(name: str, store: str, model_types: list[str], records: list, clients: int,
               log_dir: Path) -> dict:
    """A fresh instance whose first requests for each model type arrive together (a
    cold instance taking a burst): RSS afterwards, and how many times each model was
    loaded (1 each when concurrent first requests share one load)."""
    log_path = log_dir / f"{name}-burst.log"
    log_path.unlink(missing_ok=True)
    server = velocast_server(name, store, {}, log_dir, log_path.name)
    try:
        # Ready when /models answers (it reads the registry but loads no model; /health
        # would load the default one).
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                conn.request("GET", "/models", headers=HEADERS)
                if conn.getresponse().status == 200:
                    break
            if time.monotonic() > deadline or server.process.poll() is not None:
                raise RuntimeError(f"{name} not healthy; see {log_path}")
            time.sleep(0.02)
        errors = 0
        for model_type in model_types:
            body = json.dumps({"records": records, "model_type": model_type},
                              ensure_ascii=False).encode()
            barrier = threading.Barrier(clients)
            statuses: list[int] = []

            def one():
                c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                c.connect()
                barrier.wait()
                try:
                    statuses.append(post(c, body)[0])
                except (OSError, http.client.HTTPException):
                    statuses.append(-1)

            threads = [threading.Thread(target=one) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            errors += sum(1 for st in statuses if st != 200)
        memory_after = memory(server)
    finally:
        server.stop()
    loads: dict[str, int] = {}
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "loaded model" in line:
                with contextlib.suppress(ValueError, KeyError):
                    words = json.loads(line)["message"].split()
                    loads[words[3]] = loads.get(words[3], 0) + 1
    return {"clients": clients, "errors": errors, "model_loads": loads, **memory_after}
