"""Phase 4: soak. One function, many clients, a bounded duration: errors, and the
server's RSS sampled along the way (growth from start to end)."""

from __future__ import annotations

from bench.common import say
from bench.http_load import load_run, memory
from velocast.dev.servers import FunctionServer


def soak(server: FunctionServer, body: bytes, clients: int, seconds: float) -> tuple[dict, dict]:
    """The soak's figures, and the server's memory after it."""
    say(f"soak: {server.name}, {clients} clients, {seconds:g} s, 1-record bodies")
    result = load_run(server.port, body, clients, seconds, expect=1, rss_of=server,
                      rss_every=max(1.0, seconds / 20), cpu_of=server)
    result.pop("_samples")
    trace = result["rss_trace_mb"]
    result.update({"function": server.name, "rss_start_mb": trace[0][1],
                   "rss_end_mb": trace[-1][1],
                   "rss_growth_pct": round(100 * (trace[-1][1] - trace[0][1]) / trace[0][1], 2)})
    return result, memory(server)
