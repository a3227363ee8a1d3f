"""What the forecast page costs a function: bundle size and cold start.

    python bench/page_cost.py --store models [--root DIR] [--runs 7]

Builds the bundles of the project at --root (default: this one) with its own
scripts/package.py, then starts `regress` from its bundle N times under this venv's
functions-framework and times process start -> first 200 on GET /health (which loads
the default model), and -> first 200 on GET /app when the bundle serves the page.
Run it once on a checkout before the page and once after to compare (the README's
figures came from that). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_of(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def one_start(bundle: Path, store: str) -> dict:
    port = free_port()
    # PYTHONPATH first: else the venv's editable install of velocast (this checkout)
    # would be imported instead of the bundle's copy.
    env = {**os.environ, "MODEL_STORE": store, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(bundle)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "functions-framework"), "--target=regress", f"--source={bundle / 'main.py'}",
         f"--port={port}", "--host=127.0.0.1"], env=env, cwd=bundle,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        times = {}
        deadline = started + 60
        while "health" not in times and time.perf_counter() < deadline:
            if status_of(f"http://127.0.0.1:{port}/health") == 200:
                times["health"] = time.perf_counter() - started
            else:
                time.sleep(0.02)
        times["app_status"] = status_of(f"http://127.0.0.1:{port}/app")
        return times
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE)
    parser.add_argument("--store", required=True)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="velocast-page-cost-") as out:
        subprocess.run([sys.executable, str(args.root / "scripts" / "package.py"), "--out", out,
                        "regress"], check=True, stdout=subprocess.DEVNULL)
        bundle = Path(out) / "regress"
        files = [p for p in bundle.rglob("*") if p.is_file()]
        starts = [one_start(bundle, str(Path(args.store).resolve())) for _ in range(args.runs)]
        health = sorted(s["health"] for s in starts if "health" in s)
        print(json.dumps({
            "root": str(args.root),
            "bundle_files": len(files),
            "bundle_bytes": sum(p.stat().st_size for p in files),
            "zip_bytes": (Path(out) / "regress.zip").stat().st_size,
            "cold_start_health_ms": {"median": round(statistics.median(health) * 1000),
                                     "min": round(health[0] * 1000),
                                     "max": round(health[-1] * 1000), "runs": len(health)},
            "app_status": starts[-1]["app_status"],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
