"""velocast vs the old design: one run, every figure, written to bench/results.json.

    python bench/run.py                      # what `make bench` runs (< 10 min on 2 cores)
    python bench/run.py --quick              # smoke test: short durations, few reps
    python bench/run.py --models gbdt,affluence --soak-seconds 30
    python bench/run.py --store models       # reuse a store that already has models

Phases (all in one run, on the same rows and the same machine), one module each:
  1. bench/training.py: velocast models into a store (reused when already trained on
     the same data), the old design's RandomForest + joblib pickle on the same rows;
  2. bench/inprocess.py: one subprocess per side (isolates imports and RSS): artifact
     size, load time, RSS after load, 1- and 1,000-record latency;
  3. bench/http_load.py: classify, regress and the old function under
     functions-framework on loopback; median / p99 / requests per second at 1 and 16
     clients; serving RSS with every model loaded; a cold burst;
  4. bench/soak.py: one function, 16 clients, bounded duration; errors and RSS growth;
  5. bench/coldstart.py: process start -> first 200 on /predict with the models on
     fake-gcs-server (gs:// store), median of several starts, old vs velocast;
  6. bench/bundle_size.py: installed size per function (venv from the bundle's
     requirements.txt);
  7. bench/batch.py: records per vCPU-second of BigQuery-shaped batches, old vs velocast;
  8. bench/versions.py: velocast before and after the issue-12 refactor (a commit vs the
     working tree): cold start, 1-record latency, bundle size (bench/versions.json).
bench/report.py judges the targets and writes results.json, latency.png and the table.
Targets are reported pass/fail, never asserted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py` (make bench): the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import batch, report, versions  # noqa: E402
from bench.bundle_size import BundleVenvs, measure_bundles  # noqa: E402
from bench.coldstart import cold_start_phase  # noqa: E402
from bench.common import BENCH, FUNCTIONS, file_identity, make_records, say  # noqa: E402
from bench.http_load import (cold_burst, first_200, http_runs, memory,  # noqa: E402
                             old_server, velocast_server, warm_up)
from bench.inprocess import run_worker  # noqa: E402
from bench.soak import soak  # noqa: E402
from bench.training import find_data, published, train_old, train_velocast  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="export CSV[.gz] (default: the real file in "
                        "../shared/data, else the synthetic sample)")
    parser.add_argument("--store", help="reuse a store with published models (default: "
                        "train into WORK/models, reused while the data is unchanged)")
    parser.add_argument("--models", default="gbdt,rf,nn,affluence",
                        help="velocast model types to train (default: all four)")
    parser.add_argument("--holdout-days", type=int, default=None,
                        help="velocast holdout (default 28; 7 with --quick)")
    parser.add_argument("--out", type=Path, default=BENCH,
                        help="where results.json and latency.png go (default: bench/)")
    parser.add_argument("--work", type=Path, default=None,
                        help="models, pickles, logs, venvs (default: OUT/out)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: short runs, few reps, soak 10 s")
    parser.add_argument("--soak-seconds", type=float, default=None, help="default 60 (10 quick)")
    parser.add_argument("--http-seconds", type=float, default=None,
                        help="duration of each HTTP run (default 5; 1 quick)")
    parser.add_argument("--cold-starts", type=int, default=None, help="default 5 (2 quick)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--train-threads", type=int, default=1,
                        help="OpenMP threads for velocast's fits (default 1; 0: all cores). "
                             "On a machine shared with other jobs, OpenMP's spinning "
                             "threads made the real-data training take 34 min instead of "
                             "2.3 min with 1 thread")
    parser.add_argument("--no-bundle-venv", action="store_true",
                        help="do not install a venv to measure bundle sizes")
    return parser.parse_args(argv)


def request_bodies(store: str, default_entry) -> dict:
    """1- and 1,000-record bodies as the old clients send them: every counter of the
    default model's table, forecasts for after its training data."""
    from velocast.catalog import registry  # noqa: PLC0415
    from velocast.core.features import CounterTable  # noqa: PLC0415
    from velocast.catalog.store import open_store  # noqa: PLC0415

    card = registry.read_card(open_store(store), default_entry)
    table_ = CounterTable.from_dict(card["counter_table"])
    coordinates = {n: f"{table_.latitude[i]:.5f}, {table_.longitude[i]:.5f}"
                   for i, n in enumerate(table_.names)}
    start = dt.datetime.fromisoformat(card["trained_to"]) + dt.timedelta(days=30, hours=6)
    start = start.replace(tzinfo=dt.timezone(dt.timedelta(hours=2)))
    return {"1": make_records(table_.names[:1], coordinates, 1, start.replace(hour=18)),
            "1000": make_records(table_.names, coordinates, 1000, start)}


def main(argv=None) -> int:
    args = parse_args(argv)
    quick = args.quick
    soak_seconds = args.soak_seconds if args.soak_seconds is not None else (10 if quick else 60)
    http_seconds = args.http_seconds if args.http_seconds is not None else (1 if quick else 5)
    starts = args.cold_starts if args.cold_starts is not None else (2 if quick else 5)
    holdout_days = args.holdout_days if args.holdout_days is not None else (7 if quick else 28)
    args.holdout_days = holdout_days
    reps1, reps1000, load_reps = (50, 10, 2) if quick else (200, 30, 3)
    out = args.out.resolve()
    work = (args.work or out / "out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    logs_dir = work / "logs"
    logs_dir.mkdir(exist_ok=True)

    began = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    if load_at_start[0] > (os.cpu_count() or 1) * 0.5:
        say(f"WARNING: load average {load_at_start[0]} on {os.cpu_count()} cores before the "
            "run: other jobs are running, latencies will be inflated (CPU-time figures "
            "much less so)")
    timings: dict[str, float] = {}
    mark = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - mark[0], 1)
        mark[0] = now

    bundles = BundleVenvs(work, allowed=not (quick or args.no_bundle_venv))
    bundles.start()

    # 1. data and training
    from velocast.catalog import registry  # noqa: PLC0415
    from velocast import catalog  # noqa: PLC0415
    from velocast.train.data import load_counts  # noqa: PLC0415

    data_path, source = find_data(args.data)
    say(f"data: {data_path} ({source})")
    frame, _ = load_counts(data_path, report_to=None)
    data_id = file_identity(data_path)
    lap("load_data")
    store, velocast_training = train_velocast(frame, args, work, data_id)
    lap("train_velocast")
    old_model, old_training = train_old(frame, work, data_id)
    lap("train_old")
    models = published(store)
    regress_types = sorted(t for (task, t) in models if task == "regress")
    if not regress_types or not any(task == "classify" for task, _ in models):
        raise SystemExit(f"bench: the store {store} needs a regress and a classify model; "
                         f"has {sorted(models)}")
    default_entry = catalog.ranked(list(models.values()), "regress", registry.DEFAULT_METRIC["regress"])[0]
    bodies = request_bodies(store, default_entry)
    bodies_path = work / "bodies.json"
    bodies_path.write_text(json.dumps(bodies, ensure_ascii=False))
    del frame
    gc.collect()

    bundles.wait()  # no pip install running while anything is timed
    lap("wait_bundle_venv")

    # 2. in-process
    say("in-process: old design (subprocess)")
    reps = ["--bodies", str(bodies_path), "--reps1", str(reps1), "--reps1000", str(reps1000)]
    old_ip = run_worker("old", work, ["--model", str(old_model), "--load-reps",
                                      str(load_reps), *reps])
    say("in-process: velocast, every published model (subprocess)")
    new_ip = run_worker("velocast", work, ["--store", store, "--load-reps",
                                           str(max(load_reps, 5)), *reps])
    say(f"in-process: velocast, default regress model {default_entry.model_type} alone (RSS)")
    new_one = run_worker("velocast", work, ["--store", store, "--types",
                                            default_entry.model_type, "--load-reps", "1",
                                            "--reps1", "1", "--reps1000", "1",
                                            "--bodies", str(bodies_path)])
    lap("inprocess")

    # 3. HTTP
    body_bytes = {k: json.dumps({"records": v}, ensure_ascii=False).encode() for k, v in
                  bodies.items()}
    servers = {fn: velocast_server(fn, store, {}, logs_dir) for fn in FUNCTIONS}
    servers["old"] = old_server(str(old_model), {}, logs_dir)
    try:
        for server in servers.values():
            first_200(server, body_bytes["1"])
        say("HTTP: warm-up, every model type on each function")
        velocast_errors = warm_up(servers, models, bodies)
        after_warmup = {name: memory(servers[name]) for name in servers}
        http_results, samples_http, errors = http_runs(servers, bodies, body_bytes,
                                                       args.clients, http_seconds)
        velocast_errors += errors
        # Every model loaded, then the HTTP runs (1,000-record bodies raise the peak).
        serving_rss = {name: {**memory(servers[name]), "after_warmup": after_warmup[name]}
                       for name in servers}
        say(f"HTTP: cold burst, {args.clients} concurrent first requests per model type")
        serving_rss["cold_burst"] = {
            fn: cold_burst(fn, store, sorted(t for task, t in models if task == fn),
                           bodies["1"], args.clients, logs_dir) for fn in FUNCTIONS}
        velocast_errors += sum(v["errors"] for v in serving_rss["cold_burst"].values())
        lap("http")
        # 4. soak
        soak_result, serving_rss_after_soak = soak(servers["regress"], body_bytes["1"],
                                                   args.clients, soak_seconds)
        velocast_errors += soak_result["errors"]
        lap("soak")
    finally:
        for server in servers.values():
            server.stop()

    # 5. cold start
    cold = cold_start_phase(store, old_model, body_bytes["1"], starts, logs_dir)
    lap("cold_start")

    # 6. bundles
    bundle = measure_bundles(bundles)
    lap("bundle")

    # 7. batch throughput
    batch_results = batch.run_batch(
        store, str(old_model), work,
        model_type="gbdt" if "gbdt" in regress_types else default_entry.model_type,
        **({"sizes": (500, 5_000), "seconds": 0.5, "clients": (1, 2)} if quick else {}))
    lap("batch")

    # 8. before/after the refactor (its own file: bench/versions.json)
    before_after = None
    if versions.has_commit(versions.BEFORE):
        before_after = versions.run_versions(data_path, work, out / "versions.json",
                                             **({"starts": 2, "requests": 50, "gcs": False}
                                                if quick else {}))
    else:
        say(f"versions: skipped, commit {versions.BEFORE} is not in this clone")
    lap("versions")

    settings = {"reps_1_record": reps1, "reps_1000_records": reps1000,
                "load_reps": load_reps, "http_seconds": http_seconds,
                "clients": args.clients, "soak_seconds": soak_seconds,
                "cold_starts": starts, "holdout_days": holdout_days,
                "train_threads": args.train_threads or "all cores",
                "onnx_threads": 1, "gunicorn_threads": (os.cpu_count() or 1) * 4,
                "records_1000_distinct_counters": len(set(
                    r["nom_du_compteur"] for r in bodies["1000"]))}
    run = report.Run(
        quick=quick, clients=args.clients, settings=settings, load_at_start=load_at_start,
        data_path=data_path, source=source, store=store, default_entry=default_entry,
        models=models, regress_types=regress_types, velocast_training=velocast_training,
        old_training=old_training, old_model=old_model, old_ip=old_ip, new_ip=new_ip,
        new_one=new_one, http_results=http_results, samples_http=samples_http,
        velocast_errors=velocast_errors, serving_rss=serving_rss,
        serving_rss_after_soak=serving_rss_after_soak, cold=cold, bundle=bundle,
        soak=soak_result, timings=timings, batch=batch_results)
    results = report.results_of(run)
    results["meta"]["duration_s"] = round(time.perf_counter() - began, 1)
    report.write(run, results, out)
    print(batch.table(batch_results))
    if before_after:
        print(versions.table(before_after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
