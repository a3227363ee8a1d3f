"""Run both functions locally with functions-framework.

    python scripts/local.py serve [--store models]   # until Ctrl-C
    python scripts/local.py demo  [--store models]   # old system's requests, answers, stop

If the store holds no model, builds the synthetic sample and trains first, saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from velocast.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLE = ROOT / "data" / "paris-sample.csv"
FUNCTIONS = {t.name: t.local_port for t in TASKS.values()}

# The bodies the old system's clients send today.
OLD_RECORD = {"nom_du_compteur": "35 boulevard de Ménilmontant NO-SE",
              "date_et_heure_de_comptage": "2025-05-17 18:00:00+02:00",
              "coordonnées_géographiques": "48.8672, 2.3501",
              "mois_annee_comptage": "mai 2025"}
DEMO_REQUESTS = {
    "classify": {"records": [OLD_RECORD]},
    "regress": {"records": [OLD_RECORD], "model_type": "nn", "metric": "r2"},
}


def say(message: str) -> None:
    print(f"velocast: {message}", flush=True)


def has_models(store: str) -> bool:
    from velocast import registry
    from velocast.store import open_store

    entries = registry.list_entries(open_store(store))
    return {"classify", "regress"} <= {e.task for e in entries}


def ensure_models(store: str) -> None:
    if has_models(store):
        return
    say(f"no model published in {store}: building the synthetic sample and training "
        "(about a minute on 2 cores)")
    if not SAMPLE.exists():
        subprocess.run([sys.executable, "-m", "velocast.train.sample", "--out", str(SAMPLE)],
                       check=True)
    subprocess.run([sys.executable, "-m", "velocast.train", "--data", str(SAMPLE),
                    "--store", store], check=True)


def port_free(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(store: str, ports: dict[str, int]) -> dict[str, subprocess.Popen]:
    env = {**os.environ, "MODEL_STORE": store}
    processes = {}
    for name, port in ports.items():
        processes[name] = subprocess.Popen(
            [str(BIN / "functions-framework"), f"--target={name}",
             f"--source={ROOT / 'functions' / name / 'main.py'}", f"--port={port}",
             "--host=127.0.0.1"],
            env=env, cwd=ROOT, start_new_session=True)
    return processes


def wait_healthy(ports: dict[str, int], processes, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(ports)
    while pending and time.monotonic() < deadline:
        for name, port in list(pending.items()):
            if processes[name].poll() is not None:
                raise SystemExit(f"velocast: {name} exited with code {processes[name].returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        del pending[name]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        time.sleep(0.2)
    if pending:
        raise SystemExit(f"velocast: {', '.join(pending)} not healthy after {timeout:.0f} s")


def stop(processes) -> None:
    for p in processes.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in processes.values():
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def post(port: int, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def choose_ports(strict: bool) -> dict[str, int]:
    ports = {}
    for name, port in FUNCTIONS.items():
        wanted = int(os.environ.get(f"{name.upper()}_PORT", port))
        if port_free(wanted):
            ports[name] = wanted
        elif strict:
            raise SystemExit(f"velocast: port {wanted} for {name} is in use; set "
                             f"{name.upper()}_PORT to another")
        else:
            ports[name] = free_port()
            say(f"port {wanted} is in use; {name} uses {ports[name]} instead")
    return ports


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "demo"])
    parser.add_argument("--store", default=os.environ.get("MODEL_STORE", "models"),
                        help="model store: folder or gs://bucket/prefix (default: models)")
    args = parser.parse_args(argv)
    store = args.store if args.store.startswith("gs://") else str(Path(args.store).resolve())
    ensure_models(store)
    ports = choose_ports(strict=args.command == "serve")
    processes = start(store, ports)
    try:
        wait_healthy(ports, processes)
        for name, port in ports.items():
            say(f"{name} on http://127.0.0.1:{port}  (POST /predict, GET /health, GET /models)")
        if args.command == "serve":
            say("Ctrl-C stops both")
            while all(p.poll() is None for p in processes.values()):
                time.sleep(0.5)
            return 1
        failures = 0
        for name, body in DEMO_REQUESTS.items():
            print(f"\n$ curl -s -X POST http://127.0.0.1:{ports[name]}/predict "
                  f"-H 'Content-Type: application/json' -d '{json.dumps(body, ensure_ascii=False)}'")
            status, answer = post(ports[name], body)
            print(f"HTTP {status}\n{json.dumps(answer, indent=2, ensure_ascii=False)}")
            failures += status != 200
        return 1 if failures else 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop(processes)
        say("servers stopped")


if __name__ == "__main__":
    sys.exit(main())
