"""Batch throughput: records per second per vCPU for BigQuery-shaped requests.

    python bench/batch.py --store bench/out/models --old-model bench/out/old/model.joblib
    python bench/batch.py ... --sizes 5000 --profile      # + a pyinstrument profile

Each size (500, 5,000, 50,000 rows: every counter, hour after hour) goes through the
real HTTP function (functions-framework on loopback: JSON in, features, model, JSON
out) as a BigQuery remote-function call, and the same rows as the old body
{"records": [...]} to the old design (bench/old_design.py) and to velocast. One
client sends requests back to back; the figure is rows / server CPU seconds (the
server's process tree, from /proc), i.e. records per second per vCPU, plus the wall
time per request. `concurrency` then sends 5,000-row batches from C clients at once to
a server with THREADS=C, which is how THREADS and max_instance_request_concurrency
were chosen. `bench/run.py` calls `run_batch`; results go into its results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/batch.py`: the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BENCH, say, tree_cpu_seconds  # noqa: E402
from velocast import catalog  # noqa: E402
from velocast.dev.servers import FunctionServer  # noqa: E402

ROOT = BENCH.parent
KEY = "bench-batch-key"
SIZES = (500, 5_000, 50_000)
MIN_SECONDS = 3.0  # per figure: at 100 Hz clock ticks, CPU time is within ~1 %


def post(fn: FunctionServer, body: bytes, conn=None, headers=None) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", fn.port, timeout=300)
    try:
        conn.request("POST", "/", body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def started(fn: FunctionServer, body: bytes, headers=None) -> FunctionServer:
    """Spawned and answering `body` with 200 (the model loaded)."""
    fn.spawn().wait_ready(120)
    deadline = time.monotonic() + 120
    while post(fn, body, headers=headers)[0] != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{fn.name}: no 200 within 120 s; see {fn.log_path}")
        time.sleep(0.2)
    return fn


def rows_for(store: str, size: int) -> tuple[list, list]:
    """BigQuery calls and the old records for the same `size` rows: every counter of
    the default regress model, hour after hour from a month after its training data."""
    from velocast.catalog import registry  # noqa: PLC0415
    from velocast.core.features import CounterTable  # noqa: PLC0415
    from velocast.catalog.store import open_store  # noqa: PLC0415

    entries = registry.list_entries(open_store(store), "regress")
    card = registry.read_card(open_store(store), catalog.ranked(entries, "regress", registry.DEFAULT_METRIC["regress"])[0])
    table = CounterTable.from_dict(card["counter_table"])
    start = dt.datetime.fromisoformat(card["trained_to"]).astimezone(dt.timezone.utc)
    start = start.replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=30)
    calls, records = [], []
    for i in range(size):
        c = i % len(table.names)
        moment = start + dt.timedelta(hours=i // len(table.names))
        lat, lon = float(table.latitude[c]), float(table.longitude[c])
        calls.append([table.names[c], moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), lat, lon])
        records.append({"nom_du_compteur": table.names[c],
                        "date_et_heure_de_comptage": moment.isoformat(),
                        "coordonnées_géographiques": f"{lat}, {lon}"})
    return calls, records


def bigquery_body(calls: list, **context) -> bytes:
    return json.dumps({"requestId": "bench", "caller": "//bigquery.googleapis.com/projects/p/jobs/j",
                       "sessionUser": "bench@example.com",
                       "userDefinedContext": {"api_key": KEY, **context}, "calls": calls},
                      ensure_ascii=False).encode()


def measure(fn: FunctionServer, body: bytes, rows: int, reply_key: str, seconds: float,
            headers=None) -> dict:
    """One client, back to back, for at least `seconds` and 2 requests."""
    conn = http.client.HTTPConnection("127.0.0.1", fn.port, timeout=300)
    status, payload = post(fn, body, conn, headers)  # warm-up (model load, caches)
    answer = json.loads(payload) if status == 200 else {}
    if status != 200 or len(answer.get(reply_key, [])) != rows or None in answer[reply_key]:
        raise RuntimeError(f"HTTP {status}: {payload[:300]!r}")
    cpu0, wall0, n = tree_cpu_seconds(fn.process.pid), time.perf_counter(), 0
    while n < 2 or time.perf_counter() - wall0 < seconds:
        status, _ = post(fn, body, conn, headers)
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        n += 1
    wall, cpu = time.perf_counter() - wall0, tree_cpu_seconds(fn.process.pid) - cpu0
    conn.close()
    return {"requests": n, "ms_per_request": round(1000 * wall / n, 1),
            "cpu_ms_per_request": round(1000 * cpu / n, 1),
            "records_per_cpu_second": round(rows * n / cpu) if cpu else None,
            "request_mb": round(len(body) / 1e6, 2), "response_mb": round(len(payload) / 1e6, 3)}


def concurrent(fn: FunctionServer, body: bytes, rows: int, clients: int, seconds: float) -> dict:
    """`clients` closed-loop clients: records per wall second and latency."""
    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds
    cpu0 = tree_cpu_seconds(fn.process.pid)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", fn.port, timeout=300)
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status, _ = post(fn, body, conn)
            latencies.append(time.perf_counter() - t)
            errors[0] += status != 200
        conn.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - began, tree_cpu_seconds(fn.process.pid) - cpu0
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "errors": errors[0],
            "records_per_second": round(rows * len(latencies) / wall),
            "records_per_cpu_second": round(rows * len(latencies) / cpu) if cpu else None,
            "median_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "max_ms": round(1000 * latencies[-1], 1),
            "cpu_per_wall": round(cpu / wall, 2)}


def profile(store: str, calls: list, reps: int, out: Path, model_type: str) -> str:
    """pyinstrument over the real request path, in process (Flask app + service)."""
    from pyinstrument import Profiler  # noqa: PLC0415

    import functions_framework  # noqa: PLC0415

    os.environ.update({"MODEL_STORE": store, "API_KEYS": KEY, "MAX_RECORDS": "50000",
                       "LOG_LEVEL": "WARNING"})
    app = functions_framework.create_app("regress", str(ROOT / "functions" / "regress" / "main.py"))
    client = app.test_client()
    body = bigquery_body(calls, model_type=model_type)
    headers = {"Content-Type": "application/json"}
    assert client.post("/", data=body, headers=headers).status_code == 200
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(reps):
        client.post("/", data=body, headers=headers)
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    out.write_text(text)
    return text


def run_batch(store: str, old_model: str | None, work: Path, sizes=SIZES,
              seconds: float = MIN_SECONDS, model_type: str = "gbdt",
              clients=(1, 2, 4, 8)) -> dict:
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MODEL_STORE": store, "API_KEYS": KEY, "MAX_RECORDS": str(max(sizes)),
           "MAX_BODY_BYTES": str(64 * 1024 * 1024), "REFRESH_SECONDS": "3600",
           "OMP_NUM_THREADS": "1", "LOG_LEVEL": "WARNING"}
    calls_all, records_all = rows_for(store, max(sizes))
    results: dict = {"model_type": model_type, "sizes": {}}
    first = bigquery_body(calls_all[:1], model_type=model_type)
    servers = {}
    try:
        servers["regress"] = started(FunctionServer("regress", env=env,
                                                    log=logs / "batch-regress.log"), first)
        if old_model:
            servers["old"] = started(
                FunctionServer("predict_http", source=BENCH / "old_design.py",
                               env={**os.environ, "OLD_MODEL_URI": old_model},
                               log=logs / "batch-old.log"),
                json.dumps({"records": records_all[:1]}).encode())
        for size in sizes:
            calls, records = calls_all[:size], records_all[:size]
            row = results["sizes"][str(size)] = {}
            say(f"{size:,} rows: velocast regress/{model_type}, BigQuery body")
            row["velocast_bigquery"] = measure(
                servers["regress"], bigquery_body(calls, model_type=model_type), size,
                "replies", seconds)
            say(f"{size:,} rows: velocast regress/{model_type}, old body")
            row["velocast_records"] = measure(
                servers["regress"], json.dumps({"records": records, "model_type": model_type},
                                               ensure_ascii=False).encode(),
                size, "predictions", seconds, {"X-API-Key": KEY})
            if "old" in servers:
                say(f"{size:,} rows: old design (pandas + RandomForest), old body")
                row["old_design"] = measure(
                    servers["old"], json.dumps({"records": records}, ensure_ascii=False).encode(),
                    size, "predictions", seconds)
            new, old = row["velocast_bigquery"], row.get("old_design")
            if old and old["records_per_cpu_second"]:
                row["ratio_velocast_vs_old"] = round(
                    new["records_per_cpu_second"] / old["records_per_cpu_second"], 1)
    finally:
        for server in servers.values():
            server.stop()
    # THREADS = concurrency: how many 5,000-row batches one instance should take at once.
    size = 5_000 if 5_000 in sizes else sizes[0]
    body = bigquery_body(calls_all[:size], model_type=model_type)
    results["concurrency"] = []
    for c in clients:
        fn = FunctionServer("regress", env={**env, "THREADS": str(c)},
                            log=logs / f"batch-threads-{c}.log")
        try:
            started(fn, body)
            say(f"{size:,}-row batches, {c} concurrent, THREADS={c}")
            results["concurrency"].append({"threads": c, **concurrent(fn, body, size, c, seconds)})
        finally:
            fn.stop()
    return results


def table(results: dict) -> str:
    lines = [f"batch throughput, records per CPU-second (= per vCPU), regress/{results['model_type']}",
             f"{'rows':>7}  {'velocast BigQuery':>17}  {'velocast records':>16}  "
             f"{'old design':>10}  {'ratio':>6}  {'ms/request (BQ)':>15}"]
    for size, row in results["sizes"].items():
        old = row.get("old_design", {})
        lines.append(f"{int(size):>7,}  {row['velocast_bigquery']['records_per_cpu_second']:>17,}  "
                     f"{row['velocast_records']['records_per_cpu_second']:>16,}  "
                     f"{old.get('records_per_cpu_second') or 0:>10,}  "
                     f"{row.get('ratio_velocast_vs_old', '-'):>6}  "
                     f"{row['velocast_bigquery']['ms_per_request']:>15}")
    lines.append("concurrent 5,000-row batches (THREADS = clients):")
    for c in results.get("concurrency", []):
        lines.append(f"  {c['clients']} client(s): {c['records_per_second']:,} records/s "
                     f"({c['records_per_cpu_second'] or 0:,} per CPU-second), "
                     f"median {c['median_ms']} ms, max {c['max_ms']} ms, "
                     f"CPU/wall {c['cpu_per_wall']}, errors {c['errors']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/batch.py", description=__doc__.splitlines()[0])
    p.add_argument("--store", default=str(ROOT / "bench/out/models"))
    p.add_argument("--old-model", default=str(ROOT / "bench/out/old/model.joblib"),
                   help="the old design's pickle ('' to skip it)")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--model-type", default="gbdt")
    p.add_argument("--seconds", type=float, default=MIN_SECONDS)
    p.add_argument("--clients", default="1,2,4,8")
    p.add_argument("--profile", action="store_true", help="also profile 5,000-row requests")
    p.add_argument("--out", type=Path, default=ROOT / "bench/out/batch.json")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    old = args.old_model if args.old_model and Path(args.old_model).exists() else None
    if args.old_model and not old:
        say(f"no old-design model at {args.old_model}: velocast only")
    results = run_batch(args.store, old, args.out.parent, sizes, args.seconds, args.model_type,
                        tuple(int(c) for c in args.clients.split(",") if c))
    args.out.write_text(json.dumps(results, indent=1))
    print(table(results))
    if args.profile:
        calls, _ = rows_for(args.store, 5_000)
        text = profile(args.store, calls, 20, args.out.with_suffix(".profile.txt"),
                       args.model_type)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
