"""`make demo` (scripts/local.py demo) from a fresh copy of the project: with no data
and no model it trains on the synthetic sample, starts both functions and gets an
answer to each of the old system's requests. Slow (it trains): minutes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from velocast.dev.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _copy_tree(destination: Path) -> None:
    """The working tree (which may be ahead of the last commit), without what a
    fresh clone lacks: venvs, data, models, build outputs, caches, .git."""
    top_level = {".git", ".venv", "data", "models", "build"}
    anywhere = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".hypothesis",
                                      "*.egg-info", ".terraform", "*.pyc", "*.zip", "out")

    def ignore(folder, names):
        skipped = set(anywhere(folder, names))
        if Path(folder) == ROOT:
            skipped |= top_level | {n for n in names if n.startswith(".venv-")}
        return skipped

    shutil.copytree(ROOT, destination, ignore=ignore)


@pytest.mark.slow
def test_make_demo_from_a_fresh_tree(tmp_path):
    """`scripts/local.py demo` (what `make demo` runs) in a copy of the project with no
    ../shared/data and no model: it trains on the synthetic sample, starts both
    functions and gets HTTP 200 for both of the old system's requests."""
    tree = tmp_path / "velocast"
    _copy_tree(tree)
    assert not (tree / "models").exists() and not (tree / "data").exists()
    classify_port, regress_port = free_port(), free_port()
    while regress_port == classify_port:
        regress_port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"MODEL_STORE", "STORAGE_EMULATOR_HOST", "API_KEYS", "ADMIN_KEY",
                        "API_KEYS_SECRET", "ADMIN_KEY_SECRET", "API_KEYS_FILE", "ADMIN_KEY_FILE"}}
    env.update(PYTHONPATH=str(tree / "shared"), VELOCAST_SHARED_DATA=str(tmp_path / "no-data"),
               CLASSIFY_PORT=str(classify_port), REGRESS_PORT=str(regress_port),
               PYTHONUNBUFFERED="1")
    # The copy, not /work/main, must be what runs (the venv's editable install points there).
    probe = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                            "import velocast; print(velocast.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(tree)), probe.stdout

    demo = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "python"), "scripts/local.py", "demo",
         "--store", str(tree / "models")],
        cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = demo.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        # SIGINT lets local.py stop the servers it started (they have their own sessions).
        demo.send_signal(signal.SIGINT)
        try:
            output, _ = demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            output, _ = demo.communicate()
        pytest.fail(f"demo did not finish in 25 minutes:\n{output[-6000:]}")
    assert demo.returncode == 0, output[-6000:]
    assert "no model published" in output  # it had to train
    assert output.count("HTTP 200") == 3, output[-6000:]  # classify, regress, the page
    assert f"forecast page: http://127.0.0.1:{regress_port}/app" in output
    assert f"127.0.0.1:{classify_port}/predict" in output
    assert f"127.0.0.1:{regress_port}/predict" in output
    assert '"label"' in output and '"predictions"' in output
    assert "servers stopped" in output
    # The answers read alone: the functions' JSON log lines went to files.
    assert '"severity"' not in output, output[-6000:]
    assert '"severity"' in (tree / "build" / "demo-logs" / "regress.log").read_text()
    assert (tree / "models" / "registry").is_dir()
