"""`bench/run.py --quick` end to end on a small synthetic sample: every phase runs and
results.json holds every figure. Figures are not checked (targets are reported by the
benchmark, never asserted)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_quick_writes_every_figure(tmp_path):
    from velocast.train.sample import write_sample

    data = tmp_path / "sample.csv"
    # Six weeks of 16 counters: enough for a 7-day holdout, small enough for the old
    # design's 50-tree forest to fit in seconds.
    write_sample(data, dt.date(2025, 3, 1), dt.date(2025, 4, 12))
    out = tmp_path / "bench"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--data", str(data),
         "--models", "gbdt,affluence", "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    missing = []
    for key in report.REQUIRED_KEYS:
        try:
            report.get_path(results, key)
        except KeyError:
            missing.append(key)
    assert not missing, missing
    assert results["meta"]["quick"] is True
    assert results["meta"]["cores"] >= 1
    assert {"numpy", "onnxruntime", "scikit-learn", "pandas"} <= set(results["meta"]["libraries"])
    assert set(results["training"]["velocast"]["models"]) == {"gbdt", "affluence"}
    assert {t["name"] for t in results["targets"]} == set(report.TARGETS)
    for target in results["targets"]:
        assert target["met"] in (True, False, None)
    # The runtime side never imports the offline libraries.
    assert results["rss_after_load"]["velocast_offline_libraries_imported"] == []
    assert results["soak"]["requests"] > 0
    assert (out / "latency.png").stat().st_size > 10_000
    assert "targets:" in completed.stdout
    # Phase 8: the refactor's start vs this tree, each side serving its own code; a
    # shallow clone lacks the "before" commit, and the bench says it skipped the phase.
    from bench import versions as versions_phase

    if not versions_phase.has_commit(versions_phase.BEFORE):
        assert f"commit {versions_phase.BEFORE} is not in this clone" in completed.stdout
        return
    versions = json.loads((out / "versions.json").read_text())
    for fn in ("regress", "classify"):
        for side in ("before", "after"):
            assert versions["cold_start"]["folder"][fn][side]["n"] == 2
            assert versions["latency_1_record"][fn][side]["errors"] == 0
            assert versions["bundle"][fn][side]["zip_bytes"] > 0
    assert "cold start regress (folder) median" in completed.stdout
