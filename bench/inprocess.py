"""Phase 2: in-process, one subprocess per side (imports and RSS isolated): artifact
size, load time, RSS after load, 1- and 1,000-record latency (wall and thread CPU time).

`run_worker` starts this module as a subprocess; it can be run by hand too:

    python -m bench.inprocess old --model bench/out/old/model.joblib --bodies bench/out/bodies.json --out old.json
    python -m bench.inprocess velocast --store bench/out/models --bodies bench/out/bodies.json --out new.json

(--types gbdt,rf: only those model types; --reps1, --reps1000, --load-reps: repetitions.)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, rss_mb, timed


def worker_old(args) -> dict:
    from bench import old_design  # noqa: PLC0415

    bodies = json.loads(Path(args.bodies).read_text())
    rss_imports = rss_mb()
    started = time.perf_counter()
    bundle = old_design.load(args.model)
    load_times = [time.perf_counter() - started]
    rss_load = rss_mb()
    old_design.predict(bundle, bodies["1"])
    rss_predict = rss_mb()
    for _ in range(args.load_reps - 1):
        del bundle
        gc.collect()
        started = time.perf_counter()
        bundle = old_design.load(args.model)
        load_times.append(time.perf_counter() - started)
    latency = {}
    for size, reps in (("1", args.reps1), ("1000", args.reps1000)):
        records = bodies[size]
        old_design.predict(bundle, records)
        samples, cpu = [], []
        for _ in range(reps):
            out, wall, used = timed(old_design.predict, bundle, records)
            samples.append(wall)
            cpu.append(used)
        assert len(out) == len(records)
        latency[size] = samples
        latency[size + "_cpu"] = cpu
    return {"load_s": load_times, "rss_imports_mb": rss_imports, "rss_load_mb": rss_load,
            "rss_after_predict_mb": rss_predict, "latency": latency}


def worker_velocast(args) -> dict:
    import numpy as np  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    from velocast.catalog import registry  # noqa: PLC0415
    from velocast import catalog  # noqa: PLC0415
    from velocast.core.features import CounterTable, build_matrix  # noqa: PLC0415
    from velocast.core.schema import parse_records  # noqa: PLC0415
    from velocast.catalog.store import open_store  # noqa: PLC0415

    bodies = json.loads(Path(args.bodies).read_text())
    store = open_store(args.store)
    entries = registry.list_entries(store)
    chosen = []
    for task in registry.TASKS:
        for model_type in sorted({e.model_type for e in entries if e.task == task}):
            if args.types and model_type not in args.types.split(","):
                continue
            chosen.append(catalog.ranked(entries, task, registry.DEFAULT_METRIC[task], model_type)[0])

    def load(entry):
        # What ModelCache._load does: read card and bytes (size + sha256 checked), open
        # the session from bytes with the service's options, parse the counter table.
        card = registry.read_card(store, entry)
        model_bytes = registry.read_model_bytes(store, entry)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model_bytes, sess_options=options,
                                       providers=["CPUExecutionProvider"])
        table = CounterTable.from_dict(card["counter_table"])
        return session, session.get_inputs()[0].name, table

    def predict(model, records):
        session, input_name, table = model
        parsed = parse_records(records)
        batch = build_matrix(parsed, table)
        return session.run(None, {input_name: batch.matrix})

    rss_imports = rss_mb()
    models, load_times = {}, {}
    for entry in chosen:
        started = time.perf_counter()
        models[entry.model_type] = load(entry)
        load_times[entry.model_type] = [time.perf_counter() - started]
    rss_load = rss_mb()
    for model in models.values():
        predict(model, bodies["1"])
    rss_predict = rss_mb()
    for entry in chosen:
        for _ in range(args.load_reps - 1):
            started = time.perf_counter()
            load(entry)
            load_times[entry.model_type].append(time.perf_counter() - started)
    latency = {}
    for model_type, model in models.items():
        latency[model_type] = {}
        for size, reps in (("1", args.reps1), ("1000", args.reps1000)):
            records = bodies[size]
            predict(model, records)
            samples, cpu = [], []
            for _ in range(reps):
                out, wall, used = timed(predict, model, records)
                samples.append(wall)
                cpu.append(used)
            assert np.asarray(out[-1 if len(out) > 1 else 0]).shape[0] == len(records)
            latency[model_type][size] = samples
            latency[model_type][size + "_cpu"] = cpu
    return {"models": {e.model_type: {"task": e.task, "version": e.version,
                                      "onnx_bytes": e.size_bytes} for e in chosen},
            "load_s": load_times, "rss_imports_mb": rss_imports, "rss_load_mb": rss_load,
            "rss_after_predict_mb": rss_predict, "latency": latency,
            "offline_libraries_imported": sorted(m for m in ("pandas", "sklearn", "skl2onnx")
                                                 if m in sys.modules)}


def run_worker(side: str, work: Path, extra: list[str], timeout: float = 600) -> dict:
    """`python -m bench.inprocess SIDE ...` in a fresh process; its JSON result."""
    out = work / f"worker-{side}-{os.getpid()}.json"
    subprocess.run([sys.executable, "-m", "bench.inprocess", side, "--out", str(out), *extra],
                   check=True, cwd=ROOT, timeout=timeout)
    data = json.loads(out.read_text())
    out.unlink()
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=["old", "velocast"])
    parser.add_argument("--out", required=True, help="where the JSON result goes")
    parser.add_argument("--bodies", required=True, help="bodies.json: {'1': [...], '1000': [...]}")
    parser.add_argument("--model", help="old: the joblib pickle")
    parser.add_argument("--store", help="velocast: the model store")
    parser.add_argument("--types", help="velocast: only these model types (comma-separated)")
    parser.add_argument("--reps1", type=int, default=200)
    parser.add_argument("--reps1000", type=int, default=30)
    parser.add_argument("--load-reps", dest="load_reps", type=int, default=3)
    args = parser.parse_args(argv)
    result = worker_old(args) if args.side == "old" else worker_velocast(args)
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
