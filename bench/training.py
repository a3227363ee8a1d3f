"""Phase 1: the data, velocast's models and the old design's model, on the same rows.

Both are cached in the work folder and reused while the data file, the model list and
the code that fits them are unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import BENCH, REAL_DATA, ROOT, SAMPLE, say, source_digest


def find_data(arg: str | None) -> tuple[Path, str]:
    if arg:
        path = Path(arg)
        if not path.exists():
            raise SystemExit(f"bench: --data {arg} does not exist")
        return path, "real" if path.name == REAL_DATA else "given"
    shared = Path(os.environ.get("VELOCAST_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if (shared / REAL_DATA).exists():
        return shared / REAL_DATA, "real"
    if not SAMPLE.exists():
        say(f"real data not found in {shared}: writing the synthetic sample to {SAMPLE}")
        subprocess.run([sys.executable, "-m", "velocast.train.sample", "--out", str(SAMPLE)],
                       check=True, cwd=ROOT)
    return SAMPLE, "synthetic"


def published(store_uri: str) -> dict:
    """{(task, model_type): best Entry by the task's default metric}."""
    from velocast.catalog import registry  # noqa: PLC0415
    from velocast import catalog  # noqa: PLC0415
    from velocast.catalog.store import open_store  # noqa: PLC0415

    entries = registry.list_entries(open_store(store_uri))
    out = {}
    for e in entries:
        best = next(iter(catalog.ranked(entries, e.task, registry.DEFAULT_METRIC[e.task], e.model_type)), None)
        if best is not None:
            out[(e.task, e.model_type)] = best
    return out


def train_velocast(frame, args, work: Path, data_id: dict) -> tuple[str, dict]:
    from velocast.train.pipeline import MODELS, train  # noqa: PLC0415

    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in MODELS]
    if unknown:
        raise SystemExit(f"bench: unknown model type(s) {unknown}; choose from {list(MODELS)}")
    if args.store:
        have = {t for _, t in published(args.store)}
        if not have:
            raise SystemExit(f"bench: --store {args.store} holds no published model")
        return args.store, {"reused": True, "seconds": 0.0, "store": args.store}
    store = work / "models"
    marker = work / "models.bench.json"
    # Retrain when the data, the model list or the code that fits them changes.
    identity = {"data": data_id, "models": sorted(wanted), "holdout_days": args.holdout_days,
                "code": source_digest(ROOT / "shared" / "velocast" / "features.py",
                                      ROOT / "shared" / "velocast" / "train" / "pipeline.py",
                                      ROOT / "shared" / "velocast" / "train" / "export.py")}
    if store.exists() and marker.exists() and json.loads(marker.read_text()) == identity:
        types = {t for _, t in published(str(store))}
        if set(wanted) <= types:
            say(f"reusing velocast models in {store} (same data, same models)")
            return str(store), {"reused": True, "seconds": 0.0, "store": str(store)}
    shutil.rmtree(store, ignore_errors=True)
    marker.unlink(missing_ok=True)
    say(f"training velocast {','.join(wanted)} into {store}")
    started = time.perf_counter()
    with training_threads(args.train_threads):
        outcomes = train(frame, str(store), wanted, args.holdout_days)
    seconds = time.perf_counter() - started
    refused = {o.model_type: o.refused for o in outcomes if not o.published}
    if refused:
        say(f"WARNING: not published: {refused}")
    marker.write_text(json.dumps(identity))
    return str(store), {"reused": False, "seconds": round(seconds, 1), "store": str(store),
                        "refused": refused}


@contextlib.contextmanager
def training_threads(limit: int | None):
    """Cap OpenMP threads while fitting (HistGradientBoosting): on a machine shared with
    other CPU-bound jobs, OpenMP's spin-waiting threads make a fit many times slower.
    The fitted models do not depend on the thread count."""
    if not limit:
        yield
        return
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    with threadpool_limits(limits=limit, user_api="openmp"):
        yield


def train_old(frame, work: Path, data_id: dict) -> tuple[Path, dict]:
    from bench import old_design  # noqa: PLC0415
    from velocast.train.pipeline import drop_outages  # noqa: PLC0415

    folder = work / "old"
    folder.mkdir(parents=True, exist_ok=True)
    path, marker = folder / "model.joblib", folder / "model.bench.json"
    data_id = {**data_id, "code": source_digest(BENCH / "old_design.py")}
    if path.exists() and marker.exists():
        info = json.loads(marker.read_text())
        if info.get("data") == data_id:
            say(f"reusing the old design's model {path}")
            return path, {**info["fit"], "reused": True, "seconds": 0.0}
    # The rows velocast's published models were fitted on (its final fit).
    rows = drop_outages(frame)
    say(f"training the old design (RandomForest 50 trees, depth 20) on {len(rows):,} rows")
    started = time.perf_counter()
    # fit_jobs=-1 only shortens the benchmark: the trees do not depend on n_jobs and
    # the saved model has the old default n_jobs=None.
    # (joblib threads, which do not spin like OpenMP's, so no cap is needed here.)
    fit_info = old_design.train_and_save(rows, path, fit_jobs=-1)
    seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"data": data_id, "fit": fit_info}))
    return path, {**fit_info, "reused": False, "seconds": round(seconds, 1)}
