"""Phase 8: velocast before and after the issue-12 refactor, side by side in one run.

    python -m bench.versions                   # make bench-versions
    python -m bench.versions --quick           # smoke run: 2 starts, 50 requests, no GCS
    python -m bench.versions --before 50915b8 --starts 15 --requests 5000

"before" is a commit (`git archive`, extracted once into WORK/versions/tree-<sha>),
"after" the working tree. Each side runs its own code: functions-framework with
--source <tree>/functions/<fn>/main.py and PYTHONPATH=<tree>/shared (which wins over
the dev venv's editable install), in the same venv. Each side's trainer fills its own
store (feature specs may differ between the versions), with the models the old
system's bodies ask for (velocast.dev.bodies: regress names nn, classify takes the
default, affluence). Figures, alternating before/after so that load drift on a shared
machine falls on both sides alike:
  - cold start: process start -> first 200 on POST /predict with the old body, models
    in a folder store and on fake-gcs-server (gs://), median and min of N starts per
    side and function, after one discarded start each (files in the page cache). Both
    trees are byte-compiled first, as the Cloud Functions buildpack does at build time
    (`python3 -m compileall -f -q .` in the source, GoogleCloudPlatform/buildpacks
    cmd/python/functions_framework): without it, and with PYTHONDONTWRITEBYTECODE set
    (as on this machine), every start compiles velocast from source, ~20 ms of CPU
    for the after tree, which has more code;
  - 1-record latency on a warm server over one keep-alive connection, in blocks of 25
    requests alternating between the sides: median, p95, server CPU per request;
  - bundle size: each side's scripts/package.py output, zipped and unzipped
    (__pycache__ aside), and with --installed the site-packages of a fresh venv from
    its requirements.txt.
Writes bench/versions.json (--out) and prints the table; ratios are after / before.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python bench/versions.py`: the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (ADMIN_KEY, API_KEY, BENCH, FUNCTIONS, ROOT, cpu_model,  # noqa: E402
                          file_identity, library_versions, percentile, ratio, say,
                          source_digest, tree_cpu_seconds)
from bench.http_load import first_200, post  # noqa: E402
from velocast.dev.bodies import OLD_BODIES  # noqa: E402
from velocast.dev.servers import FunctionServer  # noqa: E402
from velocast.dev.venvs import tree_bytes  # noqa: E402

BEFORE = "50915b8"  # the start of the issue-12 session
MODELS = "nn,affluence"
BLOCK = 25  # requests per side before switching to the other one
BODIES = {fn: json.dumps(OLD_BODIES[fn], ensure_ascii=False).encode() for fn in FUNCTIONS}


@dataclass
class Side:
    name: str     # "before" | "after"
    root: Path    # a tree with functions/, shared/ and scripts/
    label: str    # what the tree is (commit, or the working tree and its HEAD)
    store: str = ""

    def env(self, **extra) -> dict:
        return {**os.environ, "PYTHONPATH": str(self.root / "shared"), "OMP_NUM_THREADS": "1",
                "API_KEYS": API_KEY, "ADMIN_KEY": ADMIN_KEY, **extra}

    def server(self, fn: str, store: str, logs: Path, **extra_env) -> FunctionServer:
        """`fn` of this side on a free port, spawned (not yet ready)."""
        return FunctionServer(fn, source=self.root / "functions" / fn / "main.py",
                              env=self.env(MODEL_STORE=store, **extra_env), cwd=self.root,
                              log=logs / f"{self.name}-{fn}.log").spawn()

    def code_digest(self) -> str:
        return source_digest(*sorted((self.root / "shared" / "velocast").rglob("*.py")))


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def has_commit(commit: str) -> bool:
    return subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
                          cwd=ROOT, capture_output=True).returncode == 0


def extract(commit: str, work: Path) -> Side:
    if not has_commit(commit):
        raise SystemExit(f"bench: commit {commit} is not in this clone (shallow? "
                         "git fetch --unshallow), or pass --before")
    sha = git("rev-parse", "--verify", f"{commit}^{{commit}}")
    tree = work / f"tree-{sha[:12]}"
    if not (tree / ".extracted").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        archive = subprocess.Popen(["git", "archive", "--format=tar", sha], cwd=ROOT,
                                   stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        archive.stdout.close()
        if archive.wait() != 0:
            raise SystemExit(f"bench: git archive {sha} failed")
        (tree / ".extracted").write_text(sha)
    return Side("before", tree, sha[:12])


def train(side: Side, data: Path, work: Path) -> str:
    """The side's own trainer into WORK/store-<side>, reused while the data and the
    side's code are unchanged."""
    store = work / f"store-{side.name}"
    stamp = json.dumps({"data": file_identity(data), "code": side.code_digest(),
                        "models": MODELS}, sort_keys=True)
    stamp_file = store / ".bench-stamp"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        say(f"versions: {side.name} store reused ({store})")
        return str(store)
    shutil.rmtree(store, ignore_errors=True)
    say(f"versions: training {MODELS} with the {side.name} tree's trainer into {store}")
    log = work / f"train-{side.name}.log"
    with open(log, "wb") as out:
        code = subprocess.run([sys.executable, "-m", "velocast.train", "--data", str(data),
                               "--store", str(store), "--models", MODELS],
                              env=side.env(), cwd=side.root, stdout=out,
                              stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"bench: the {side.name} trainer exited with {code}; see {log}")
    stamp_file.write_text(stamp)
    return str(store)


def compile_tree(side: Side) -> None:
    """Bytecode for the side's runtime code, as the buildpack writes it at build time."""
    subprocess.run([sys.executable, "-m", "compileall", "-f", "-q", str(side.root / "shared"),
                    str(side.root / "functions")], check=True, capture_output=True)


def summary_s(values: list[float]) -> dict:
    return {"n": len(values), "median_s": round(statistics.median(values), 3),
            "min_s": round(min(values), 3), "max_s": round(max(values), 3),
            "runs_s": [round(v, 3) for v in values]}


def cold_starts(sides: list[Side], stores: dict, starts: int, logs: Path,
                **extra_env) -> dict:
    first = {s.name: {fn: [] for fn in FUNCTIONS} for s in sides}
    listen = {s.name: {fn: [] for fn in FUNCTIONS} for s in sides}
    for round_ in range(starts + 1):  # round 0 is discarded (page cache)
        for side in (sides if round_ % 2 == 0 else sides[::-1]):
            for fn in FUNCTIONS:
                server = side.server(fn, stores[side.name], logs, **extra_env)
                try:
                    timing = first_200(server, BODIES[fn])
                finally:
                    server.stop()
                if round_:
                    first[side.name][fn].append(timing["first_200_s"])
                    listen[side.name][fn].append(timing["listen_s"])
    out = {}
    for fn in FUNCTIONS:
        row = {s.name: {**summary_s(first[s.name][fn]),
                        "listen_median_s": round(statistics.median(listen[s.name][fn]), 3)}
               for s in sides}
        row["ratio_median"] = ratio(row["after"]["median_s"], row["before"]["median_s"])
        row["ratio_min"] = ratio(row["after"]["min_s"], row["before"]["min_s"])
        out[fn] = row
        say(f"cold start {fn}: median before {row['before']['median_s']} s, "
            f"after {row['after']['median_s']} s")
    return out


def latency(sides: list[Side], stores: dict, requests: int, logs: Path) -> dict:
    out = {}
    for fn in FUNCTIONS:
        servers = {s.name: s.server(fn, stores[s.name], logs) for s in sides}
        conns: dict[str, http.client.HTTPConnection] = {}
        try:
            for name, server in servers.items():
                first_200(server, BODIES[fn])
                conns[name] = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                for _ in range(BLOCK):  # warm: the connection, allocator, caches
                    post(conns[name], BODIES[fn])
            wall = {name: [] for name in servers}
            cpu = dict.fromkeys(servers, 0.0)
            errors = dict.fromkeys(servers, 0)
            for block in range(-(-requests // BLOCK)):
                for side in (sides if block % 2 == 0 else sides[::-1]):
                    name, conn = side.name, conns[side.name]
                    cpu_start = tree_cpu_seconds(servers[name].process.pid)
                    for _ in range(BLOCK):
                        started = time.perf_counter()
                        status, _ = post(conn, BODIES[fn])
                        wall[name].append(time.perf_counter() - started)
                        errors[name] += status != 200
                    cpu[name] += tree_cpu_seconds(servers[name].process.pid) - cpu_start
        finally:
            for conn in conns.values():
                conn.close()
            for server in servers.values():
                server.stop()
        row = {}
        for name, seconds in wall.items():
            ms = [s * 1000 for s in seconds]
            row[name] = {"n": len(ms), "errors": errors[name],
                         "median_ms": round(statistics.median(ms), 3),
                         "p95_ms": round(percentile(ms, 95), 3),
                         "p99_ms": round(percentile(ms, 99), 3),
                         "min_ms": round(min(ms), 3),
                         "server_cpu_ms_per_request": round(cpu[name] * 1000 / len(ms), 3)}
        for key in ("median_ms", "p95_ms", "server_cpu_ms_per_request"):
            row[f"ratio_{key}"] = ratio(row["after"][key], row["before"][key])
        out[fn] = row
        say(f"1-record latency {fn}: median before {row['before']['median_ms']} ms, "
            f"after {row['after']['median_ms']} ms")
    return out


def bundles(sides: list[Side], work: Path, venvs_work: Path | None) -> dict:
    """Sizes of each side's bundles; installed sizes too when `venvs_work` (where
    bench/bundle_size.py caches its venvs) is given."""
    out: dict = {fn: {} for fn in FUNCTIONS}
    requirements = {}
    for side in sides:
        build = work / f"build-{side.name}"
        shutil.rmtree(build, ignore_errors=True)
        subprocess.run([sys.executable, str(side.root / "scripts" / "package.py"), "--out",
                        str(build)], env=side.env(), cwd=side.root, check=True,
                       capture_output=True)
        for fn in FUNCTIONS:
            reqs = build / fn / "requirements.txt"
            requirements[(side.name, fn)] = reqs
            out[fn][side.name] = {
                "zip_bytes": (build / f"{fn}.zip").stat().st_size,
                "unzipped_bytes": tree_bytes(build / fn, skip_pycache=True),
                "files": sum(1 for p in (build / fn).rglob("*")
                             if p.is_file() and "__pycache__" not in p.parts),
                "requirements": [line for line in reqs.read_text().splitlines()
                                 if line.strip() and not line.startswith("#")]}
    if venvs_work is not None:
        from bench.bundle_size import BundleVenvs, requirements_bytes  # noqa: PLC0415
        from velocast.dev.venvs import site_packages  # noqa: PLC0415

        venvs = BundleVenvs(venvs_work, allowed=True)
        venvs.start(list(requirements.values()))
        venvs.wait()
        for (name, fn), reqs in requirements.items():
            folder = venvs.cached(reqs)
            out[fn][name]["installed_bytes"] = (
                requirements_bytes(site_packages(folder), skip_pycache=True) if folder else None)
    for fn in FUNCTIONS:
        for key in ("zip_bytes", "unzipped_bytes", "installed_bytes"):
            if key in out[fn]["after"]:
                out[fn][f"ratio_{key}"] = ratio(out[fn]["after"][key], out[fn]["before"][key])
    return out


def table(results: dict) -> str:
    rows = [("", "before", "after", "after/before")]
    for store, by_fn in results["cold_start"].items():
        for fn, row in by_fn.items():
            for stat in ("median", "min"):
                rows.append((f"cold start {fn} ({store}) {stat}, s", row["before"][f"{stat}_s"],
                             row["after"][f"{stat}_s"], row[f"ratio_{stat}"]))
    for fn, row in results["latency_1_record"].items():
        for key, label in (("median_ms", "median, ms"), ("p95_ms", "p95, ms"),
                           ("server_cpu_ms_per_request", "server CPU, ms")):
            rows.append((f"1 record {fn} {label}", row["before"][key], row["after"][key],
                         row[f"ratio_{key}"]))
    for fn, row in results["bundle"].items():
        for key, label in (("zip_bytes", "zip"), ("unzipped_bytes", "unzipped"),
                           ("installed_bytes", "installed")):
            if f"ratio_{key}" in row:
                rows.append((f"bundle {fn} {label}, KB",
                             *(round(row[s][key] / 1024, 1) if row[s][key] else "n/a"
                               for s in ("before", "after")), row[f"ratio_{key}"]))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{r[0]:<{width}}  {r[1]!s:>9}  {r[2]!s:>9}  {r[3]!s:>12}" for r in rows)


def run_versions(data: Path, work: Path, out: Path, *, before: str = BEFORE, starts: int = 11,
                 requests: int = 2000, gcs: bool = True, installed: bool = False) -> dict:
    base, work = work, work / "versions"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    load_start = [round(x, 2) for x in os.getloadavg()]
    began = time.perf_counter()
    head = git("rev-parse", "--short=12", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "shared", "functions", "scripts"))
    sides = [extract(before, work),
             Side("after", ROOT, f"working tree at {head}" + (" (modified)" if dirty else ""))]
    stores = {s.name: train(s, data, work) for s in sides}
    for side in sides:
        compile_tree(side)
    results: dict = {"cold_start": {}}
    say(f"versions: cold start, {starts} starts per side and function, folder store")
    results["cold_start"]["folder"] = cold_starts(sides, stores, starts, logs)
    if gcs:
        sys.path.insert(0, str(ROOT))  # tests.gcs_fixtures, as bench/coldstart.py uses it
        from tests.gcs_fixtures import start_fake_gcs  # noqa: PLC0415
        from velocast.train.publish import copy_store  # noqa: PLC0415  (byte-for-byte copies)
        from velocast.catalog.store import open_store  # noqa: PLC0415

        say(f"versions: cold start, {starts} starts per side and function, fake-gcs-server")
        with start_fake_gcs() as fake:
            bucket = fake.new_bucket("versions")
            for side in sides:
                copy_store(open_store(stores[side.name]), fake.store(bucket, side.name))
            results["cold_start"]["gcs"] = cold_starts(
                sides, {s.name: f"gs://{bucket}/{s.name}" for s in sides}, starts, logs,
                **fake.env, GOOGLE_CLOUD_PROJECT="bench")
    say(f"versions: 1-record latency, {requests} requests per side and function")
    results["latency_1_record"] = latency(sides, stores, requests, logs)
    say("versions: bundles")
    results["bundle"] = bundles(sides, work, base if installed else None)
    results["meta"] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "before": {"commit": sides[0].label, "code_digest": sides[0].code_digest()},
        "after": {"tree": sides[1].label, "code_digest": sides[1].code_digest()},
        "data": file_identity(data), "models": MODELS,
        "model_bytes": {s.name: {str(p.parent.relative_to(stores[s.name])): p.stat().st_size
                                 for p in Path(stores[s.name]).rglob("*.onnx")} for s in sides},
        "bodies": OLD_BODIES, "cold_starts": starts, "requests": requests, "block": BLOCK,
        "omp_num_threads": 1, "bytecode": "compileall -f of both trees before the starts",
        "cpu_count": os.cpu_count(), "cpu": cpu_model(),
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "duration_s": round(time.perf_counter() - began, 1), "libraries": library_versions()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    say(f"versions: wrote {out}")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versions",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help=f"commit (default {BEFORE})")
    parser.add_argument("--data", help="export CSV[.gz] (default: as bench/run.py)")
    parser.add_argument("--work", type=Path, default=BENCH / "out",
                        help="trees, stores, logs (default bench/out; WORK/versions/...)")
    parser.add_argument("--out", type=Path, default=BENCH / "versions.json")
    parser.add_argument("--starts", type=int, default=None, help="cold starts (11; 2 quick)")
    parser.add_argument("--requests", type=int, default=None,
                        help="1-record requests per side and function (2000; 50 quick)")
    parser.add_argument("--no-gcs", action="store_true", help="folder store only")
    parser.add_argument("--installed", action="store_true",
                        help="also the installed size (a venv per requirements.txt, cached)")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    args = parser.parse_args(argv)
    from bench.training import find_data  # noqa: PLC0415

    data, _ = find_data(args.data)
    results = run_versions(
        data, args.work.resolve(), args.out.resolve(), before=args.before,
        starts=args.starts or (2 if args.quick else 11),
        requests=args.requests or (50 if args.quick else 2000),
        gcs=not (args.no_gcs or args.quick), installed=args.installed)
    print(table(results))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
