"""A function as a real server: `functions-framework` on a loopback port.

Used by scripts/local.py (fixed ports, output on the terminal), the tests (a free
port, output in a log file they read) and the bench (the old design's function too).
The server runs in its own session, so `stop()` ends gunicorn's arbiter and its
workers together.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def function_source(name: str) -> Path:
    return ROOT / "functions" / name / "main.py"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether a server could listen on `port` now. SO_REUSEADDR as the servers set it
    (gunicorn, werkzeug): a port whose last connections are in TIME_WAIT (`make serve`
    right after `make demo`) is free to them, and so to this check."""
    with contextlib.closing(socket.socket()) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def get_status(port: int, path: str, timeout: float = 30.0) -> int:
    """Status of GET `path` on loopback; OSError when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except http.client.HTTPException as exc:
        raise ConnectionError(str(exc)) from exc
    finally:
        conn.close()


def stop_process(process: subprocess.Popen | None, *, group: bool = False,
                 timeout: float = 10.0) -> None:
    """SIGTERM (to its whole process group if `group`), SIGKILL after `timeout` s."""
    if process is None or process.poll() is not None:
        return

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


class FunctionServer:
    """`functions-framework --target TARGET --source SOURCE` on 127.0.0.1.

    port 0 picks a free port (and another one if it was taken before the server bound
    it); `log` is where its output goes: a path (kept), None (a temporary file that
    `close()` removes) or `inherit=True` (the caller's terminal, as scripts/local.py wants).
    """

    def __init__(self, target: str, *, source: Path | None = None, env: dict | None = None,
                 port: int = 0, bin_dir: Path | None = None, cwd: Path | None = None,
                 log: Path | None = None, inherit: bool = False):
        self.name = target
        self.source = Path(source) if source else function_source(target)
        self.env = {k: str(v) for k, v in (os.environ if env is None else env).items()}
        self.wanted_port = port
        self.port = port
        self.bin_dir = Path(bin_dir) if bin_dir else Path(sys.executable).parent
        self.cwd = Path(cwd) if cwd else ROOT
        self.inherit = inherit
        self.keep_log = log is not None
        if inherit:
            self.log_path = None
        elif log is None:
            handle, name = tempfile.mkstemp(prefix=f"velocast-{target}-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        else:
            self.log_path = Path(log)
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> "FunctionServer":
        """Start the process (returns at once; see wait_ready)."""
        self.port = self.wanted_port or free_port()
        output = None
        if self.log_path is not None:
            output = open(self.log_path, "ab")  # noqa: SIM115  (the child keeps its copy)
        self.started_at = time.perf_counter()
        try:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "functions-framework"), f"--target={self.name}",
                 f"--source={self.source}", f"--port={self.port}", "--host=127.0.0.1"],
                env=self.env, cwd=str(self.cwd), stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT if output else None, start_new_session=True)
        finally:
            if output is not None:
                output.close()
        return self

    def wait_ready(self, timeout: float = 60.0, path: str = "/health",
                   ok=lambda status: True) -> "FunctionServer":
        """Wait until GET `path` answers with a status `ok` accepts (by default any:
        the process serves requests). RuntimeError, with the log's end, otherwise."""
        for _ in range(3):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                with contextlib.suppress(OSError):
                    if ok(get_status(self.port, path)):
                        return self
                time.sleep(0.1)
            exited = self.process.poll()
            self.stop()
            if self.wanted_port or "Address already in use" not in self.log_text():
                break
            self.spawn()  # the free port was taken before the server bound it
        state = f"exited with {exited}" if exited is not None else \
            f"gave no answer on {path} within {timeout:.0f} s"
        raise RuntimeError(f"{self.name} {state}:\n{self.log_text()[-4000:]}")

    def start(self, timeout: float = 60.0) -> "FunctionServer":
        return self.spawn().wait_ready(timeout)

    def log_text(self) -> str:
        if self.log_path is None:
            return "(output on the terminal)"
        with contextlib.suppress(OSError), open(self.log_path, encoding="utf-8",
                                                errors="replace") as f:
            return f.read()
        return ""

    def log_lines(self) -> list[dict]:
        """The JSON objects among the log's lines (the service's structured logs)."""
        lines = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return [line for line in lines if isinstance(line, dict)]

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process, group=True)

    def close(self) -> None:
        self.stop()
        if self.log_path is not None and not self.keep_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> "FunctionServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def started(servers: dict, timeout: float = 90.0):
    """Start every server side by side (their imports overlap), wait for all, and close
    them all on the way out, whatever happened."""
    try:
        for server in servers.values():
            server.spawn()
        for server in servers.values():
            server.wait_ready(timeout=timeout)
        yield servers
    finally:
        for server in servers.values():
            server.close()
