"""Run every function (one per velocast.core.tasks.TASKS entry) locally with functions-framework.

    python scripts/local.py serve [--store models]   # until Ctrl-C; prints the page's URL
    python scripts/local.py demo  [--store models]   # old system's requests, answers, stop

If the store holds no model, builds the synthetic sample and trains first, saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from velocast.dev.bodies import OLD_BODIES, OLD_RECORD
from velocast.dev.servers import FunctionServer, free_port, port_free
from velocast.core.tasks import TASK_NAMES, TASKS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "paris-sample.csv"
DEMO_LOGS = ROOT / "build" / "demo-logs"
FUNCTIONS = {t.name: t.local_port for t in TASKS.values()}
# A task the old clients never called gets the records alone (its default model).
DEMO_REQUESTS = {name: OLD_BODIES.get(name, {"records": [OLD_RECORD]}) for name in TASK_NAMES}


def say(message: str) -> None:
    print(f"velocast: {message}", flush=True)


def has_models(store: str) -> bool:
    from velocast.catalog import registry
    from velocast.catalog.store import open_store

    entries = registry.list_entries(open_store(store))
    return set(TASK_NAMES) <= {e.task for e in entries}


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


def page_env(ports: dict[str, int]) -> dict[str, dict[str, str]]:
    """The forecast page is opened on regress and calls classify: regress says where
    classify is, classify lets regress' origin (both spellings of loopback) call it."""
    regress = ports["regress"]
    origins = [f"http://127.0.0.1:{regress}", f"http://localhost:{regress}",
               *filter(None, os.environ.get("ALLOWED_ORIGINS", "").split(","))]
    return {"classify": {"ALLOWED_ORIGINS": ",".join(origins)},
            "regress": {"CLASSIFY_URL": f"http://127.0.0.1:{ports['classify']}"}}


def page_url(ports: dict[str, int]) -> str:
    return f"http://127.0.0.1:{ports['regress']}/app"


# gunicorn threads per function (functions-framework's THREADS; its default is 4 per
# CPU). A client that stops mid-request holds a thread until its deadline (2 s,
# velocast.serving.body and velocast.serving.transport), so the threads must outnumber the stalled
# clients to absorb: with 8 clients stalled mid-head and 8 mid-body held open and 12
# clients loading it for 20 s, THREADS=8 (the cloud's concurrency, where the front end
# caps requests per instance) answered /health in up to 4.0 s and 63 valid requests;
# THREADS=32: /health in 0.15 s at most and 11,898 valid requests, none lost
# (bench/attack_transport.json). Idle threads cost next to nothing: gunicorn starts them
# as requests come. THREADS in the environment wins.
LOCAL_THREADS = 32


def start(store: str, ports: dict[str, int], logs: Path | None = None) -> dict[str, FunctionServer]:
    """The functions; their JSON log lines go to the terminal, or to logs/<name>.log
    (the demo: its answers stay readable)."""
    env = {"THREADS": str(LOCAL_THREADS), **os.environ, "MODEL_STORE": store}
    extra = page_env(ports)
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    servers = {name: FunctionServer(name, env={**env, **extra.get(name, {})}, port=port,
                                    inherit=logs is None,
                                    log=logs / f"{name}.log" if logs is not None else None)
               for name, port in ports.items()}
    for server in servers.values():
        server.spawn()
    return servers


def wait_healthy(servers: dict[str, FunctionServer], timeout: float = 60.0) -> None:
    for name, server in servers.items():
        try:
            server.wait_ready(timeout, ok=lambda status: status == 200)
        except RuntimeError as exc:  # exited, or no 200 in time (its output is above)
            raise SystemExit(f"velocast: {str(exc).splitlines()[0].rstrip(':')}") from None


def stop(servers: dict[str, FunctionServer]) -> None:
    for server in servers.values():
        server.stop()


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
            raise SystemExit(f"velocast: port {wanted} for {name} is in use: another "
                             "`make serve` is probably running (stop it with Ctrl-C), or "
                             f"set {name.upper()}_PORT")
        else:
            ports[name] = free_port()
            say(f"port {wanted} is in use; {name} uses {ports[name]} instead")
    return ports


def _stop_on_signals() -> None:
    """SIGTERM would end this process without its `finally`, leaving both servers (in
    their own sessions) running; a shell starts background jobs with SIGINT ignored, so
    Ctrl-C did nothing. Both now unwind through `finally`, which stops the servers."""
    def unwind(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, unwind)
    signal.signal(signal.SIGINT, unwind)


def main(argv=None) -> int:
    _stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "demo"])
    parser.add_argument("--store", default=os.environ.get("MODEL_STORE", "models"),
                        help="model store: folder or gs://bucket/prefix (default: models)")
    args = parser.parse_args(argv)
    store = args.store if args.store.startswith("gs://") else str(Path(args.store).resolve())
    ensure_models(store)
    ports = choose_ports(strict=args.command == "serve")
    logs = DEMO_LOGS if args.command == "demo" else None
    if logs is not None:
        for stale in logs.glob("*.log"):
            stale.unlink()  # each demo's own lines only
    servers = start(store, ports, logs)
    try:
        wait_healthy(servers)
        for name, port in ports.items():
            say(f"{name} on http://127.0.0.1:{port}  (POST /predict, GET /health, GET /models)")
        say(f"forecast page: {page_url(ports)}  (map, a counter's coming days, the models)")
        if args.command == "serve":
            say("Ctrl-C stops them all")
            while all(s.process.poll() is None for s in servers.values()):
                time.sleep(0.5)
            return 1
        failures = 0
        say(f"the functions' log lines: {logs.relative_to(ROOT)}/")
        for name, body in DEMO_REQUESTS.items():
            print(f"\n$ curl -s -X POST http://127.0.0.1:{ports[name]}/predict "
                  f"-H 'Content-Type: application/json' -d '{json.dumps(body, ensure_ascii=False)}'")
            status, answer = post(ports[name], body)
            print(f"HTTP {status}\n{json.dumps(answer, indent=2, ensure_ascii=False)}")
            failures += status != 200
        with urllib.request.urlopen(page_url(ports), timeout=30) as page:
            print(f"\n$ curl -s {page_url(ports)}\nHTTP {page.status} "
                  f"({len(page.read()):,} bytes of HTML): the forecast page; `make serve` "
                  "keeps it up to open in a browser")
            failures += page.status != 200
        return 1 if failures else 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop(servers)
        say("servers stopped")


if __name__ == "__main__":
    sys.exit(main())
