"""Issue 25's done criterion, shortened: on a real regress server with the threads
`scripts/local.py serve` gives it, while 8 connections stalled mid-head and 8
mid-chunked-body are held open (re-opened as soon as the server answers them), /health
answers every probe and a load burst that interleaves unread-body 404/415 answers with
valid requests on kept-alive connections loses no valid request. The full 20 s run
and its figures: bench/attack_transport.py."""

from __future__ import annotations

import argparse
import importlib.util

from bench.attack_transport import run
from tests.function_clients import ROOT


def _local_threads() -> int:
    spec = importlib.util.spec_from_file_location("local_script", ROOT / "scripts" / "local.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LOCAL_THREADS


def test_stalled_heads_and_chunked_bodies_held_open_lose_no_valid_request(trained_store,
                                                                         tmp_path):
    args = argparse.Namespace(stalled=8, clients=3, mixed=3, seconds=6.0, cap=5.0)
    result = run(None, str(trained_store), _local_threads(), args, tmp_path / "server.log")
    assert result["health_probes"] >= 10 and result["health_failed"] == 0, result
    assert result["valid_requests"] > 50 and result["valid_lost"] == 0, result
    assert sum(result["unread_4xx_outcomes"].values()) > 20, result  # interleaved, answered
    assert set(result["unread_4xx_outcomes"]) <= {"404", "415"}, result
    # Every stalled connection the server let go of was answered 408 first.
    assert result["stalls_answered"] and all(
        key.endswith(":408") for key in result["stalls_answered"]), result
