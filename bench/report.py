"""The bench's report: targets, results.json (every figure, REQUIRED_KEYS checked),
the table printed at the end and bench/latency.png."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (FUNCTIONS, blas_info, cpu_model, library_versions, ratio,
                          summarize)

TARGETS = {
    "inprocess_1record_speedup": (">=", 20.0, "x"),
    "artifact_size_ratio": (">=", 40.0, "x"),
    "cold_start_speedup": (">=", 10.0, "x"),
    "http_1record_median_1client_ms": ("<=", 3.0, "ms"),
    "http_1record_median_16clients_ms": ("<=", 3.0, "ms"),
    "http_1record_p99_16clients_ms": ("<=", 25.0, "ms"),
    "http_errors": ("<=", 0, ""),
    "http_1000records_median_ms": ("<=", 20.0, "ms"),
    "cold_start_s": ("<=", 1.5, "s"),
    "serving_rss_mb": ("<=", 250.0, "MB"),
}

TARGET_NOTES = {
    "inprocess_1record_speedup": "old median / slowest published velocast regress model's median",
    "artifact_size_ratio": "old joblib bytes / largest published ONNX file",
    "cold_start_speedup": "old median / slowest velocast function's median",
    "http_1record_median_1client_ms": "worst of classify, regress",
    "http_1record_median_16clients_ms": "strict reading of the target; closed loop, 16 clients "
                                        "on 2 cores: mostly queueing (Little's law)",
    "http_1record_p99_16clients_ms": "worst of classify, regress",
    "http_errors": "every velocast HTTP run, warm-ups and the soak",
    "http_1000records_median_ms": "1 client, worst of classify, regress",
    "cold_start_s": "median, worst of classify, regress",
    "serving_rss_mb": "VmRSS summed over the server's process tree (gunicorn arbiter + "
                      "worker; shared pages counted twice, PSS in results.json), every "
                      "model loaded, after the HTTP runs; worst function",
}

# Every key results.json must hold (dotted paths); tests/e2e/test_bench_smoke.py checks them.

REQUIRED_KEYS = (
    "meta.cores", "meta.libraries", "meta.python", "meta.data.source", "meta.data.rows",
    "meta.quick", "meta.duration_s", "meta.settings", "meta.openblas_env",
    "training.velocast.models", "training.velocast.seconds", "training.old.seconds",
    "training.old.rows",
    "artifacts.old_joblib_bytes", "artifacts.velocast_onnx_bytes", "artifacts.ratio",
    "load.old_s", "load.velocast_s", "load.ratio",
    "rss_after_load.old_mb", "rss_after_load.velocast_default_mb",
    "rss_after_load.velocast_all_mb", "rss_after_load.ratio",
    "inprocess.old.1", "inprocess.old.1000", "inprocess.velocast", "inprocess.speedup",
    "http.regress.1.1", "http.regress.1.16", "http.regress.1000.1", "http.regress.1000.16",
    "http.classify.1.1", "http.classify.1.16", "http.classify.1000.1", "http.classify.1000.16",
    "http.old.1.1", "http.old.1.16", "http.old.1000.1", "http.old.1000.16",
    "http.errors",
    "serving_rss.regress", "serving_rss.classify", "serving_rss.old", "serving_rss.cold_burst",
    "cold_start.regress.median_s", "cold_start.classify.median_s", "cold_start.old.median_s",
    "cold_start.ratio",
    "bundle.classify", "bundle.regress",
    "soak.seconds", "soak.clients", "soak.requests", "soak.errors", "soak.rss_start_mb",
    "soak.rss_end_mb", "soak.rss_growth_pct",
    "targets", "timings", "batch.sizes.500", "batch.concurrency",
)


@dataclass
class Run:
    """What one bench run measured, phase by phase (bench/run.py fills it in)."""

    quick: bool
    clients: int
    settings: dict
    load_at_start: list
    data_path: Path
    source: str
    store: str
    default_entry: object
    models: dict
    regress_types: list
    velocast_training: dict
    old_training: dict
    old_model: Path
    old_ip: dict
    new_ip: dict
    new_one: dict
    http_results: dict
    samples_http: dict
    velocast_errors: int
    serving_rss: dict
    serving_rss_after_soak: dict
    cold: dict
    bundle: dict
    soak: dict
    timings: dict
    batch: dict  # bench/batch.py


def results_of(run: Run) -> dict:
    """results.json's content (meta.duration_s left to the caller)."""
    old_bytes = run.old_model.stat().st_size
    onnx = {t: v["onnx_bytes"] for t, v in run.new_ip["models"].items()}
    inproc_new = {t: {size: summarize(v[size], v[size + "_cpu"]) for size in ("1", "1000")}
                  for t, v in run.new_ip["latency"].items()}
    inproc_old = {size: summarize(run.old_ip["latency"][size], run.old_ip["latency"][size + "_cpu"])
                  for size in ("1", "1000")}
    speedup = {t: {size: ratio(inproc_old[size]["median_ms"], v[size]["median_ms"])
                   for size in ("1", "1000")} for t, v in inproc_new.items()}
    load_new = {t: round(statistics.median(v), 4) for t, v in run.new_ip["load_s"].items()}
    load_old = round(statistics.median(run.old_ip["load_s"]), 4)
    run.http_results["errors"] = run.velocast_errors
    run.http_results["old_errors"] = sum(run.http_results["old"][s][c]["errors"]
                                     for s in ("1", "1000") for c in ("1", str(run.clients)))
    clients_key = str(run.clients)
    hr = run.http_results
    regress_speedups = [speedup[t]["1"] for t in run.regress_types if t in speedup]
    results = {
        "meta": {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "duration_s": None,
            "quick": run.quick,
            "cores": os.cpu_count(),
            "cpu_model": cpu_model(),
            "load_average_at_start": run.load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "noisy": max(run.load_at_start[0], os.getloadavg()[0]) > (os.cpu_count() or 1) * 0.5,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "libraries": library_versions(),
            "blas": blas_info(),
            "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE",
                                                             "OPENBLAS_L2_SIZE")},
            "data": {"path": str(run.data_path), "source": run.source, "rows": run.old_training["rows"],
                     "rows_note": "rows both designs were fitted on (after velocast's "
                                  "sensor-outage filter)"},
            "store": run.store,
            "default_regress_model": run.default_entry.model_type,
            "settings": run.settings,
        },
        "training": {"velocast": {**run.velocast_training, "models": {
            t: {"task": e.task, "version": e.version, "metrics": e.metrics,
                "onnx_bytes": e.size_bytes} for (_, t), e in sorted(run.models.items())}},
            "old": run.old_training},
        "artifacts": {"old_joblib_bytes": old_bytes, "velocast_onnx_bytes": onnx,
                      "ratio": {t: ratio(old_bytes, b) for t, b in onnx.items()}},
        "load": {"old_s": load_old, "velocast_s": load_new,
                 "ratio": {t: ratio(load_old, s) for t, s in load_new.items()},
                 "old_runs_s": run.old_ip["load_s"], "velocast_runs_s": run.new_ip["load_s"]},
        "rss_after_load": {
            "old_mb": round(run.old_ip["rss_load_mb"], 1),
            "old_imports_only_mb": round(run.old_ip["rss_imports_mb"], 1),
            "old_after_predict_mb": round(run.old_ip["rss_after_predict_mb"], 1),
            "velocast_default_mb": round(run.new_one["rss_load_mb"], 1),
            "velocast_default_model": run.default_entry.model_type,
            "velocast_imports_only_mb": round(run.new_one["rss_imports_mb"], 1),
            "velocast_all_mb": round(run.new_ip["rss_load_mb"], 1),
            "velocast_all_after_predict_mb": round(run.new_ip["rss_after_predict_mb"], 1),
            "velocast_offline_libraries_imported": run.new_ip["offline_libraries_imported"],
            "ratio": ratio(run.old_ip["rss_load_mb"], run.new_one["rss_load_mb"]),
        },
        "inprocess": {"old": inproc_old, "velocast": inproc_new, "speedup": speedup,
                      "speedup_cpu": {t: {size: ratio(inproc_old[size].get("cpu_median_ms"),
                                                      v[size].get("cpu_median_ms"))
                                          for size in ("1", "1000")}
                                      for t, v in inproc_new.items()}},
        "http": run.http_results,
        "serving_rss": {**run.serving_rss, "regress_after_soak": run.serving_rss_after_soak},
        "cold_start": {**run.cold, "ratio": {fn: ratio(run.cold["old"]["median_s"],
                                                   run.cold[fn]["median_s"]) for fn in FUNCTIONS}},
        "bundle": run.bundle,
        "soak": run.soak,
        "timings": run.timings,
        "batch": run.batch,
    }
    targets = [
        judge("inprocess_1record_speedup", min(regress_speedups) if regress_speedups else None),
        judge("artifact_size_ratio", ratio(old_bytes, max(onnx.values()))),
        judge("cold_start_speedup", ratio(run.cold["old"]["median_s"],
                                          max(run.cold[fn]["median_s"] for fn in FUNCTIONS))),
        judge("http_1record_median_1client_ms", max(hr[fn]["1"]["1"]["median_ms"]
                                                    for fn in FUNCTIONS)),
        judge("http_1record_median_16clients_ms", max(hr[fn]["1"][clients_key]["median_ms"]
                                                      for fn in FUNCTIONS)),
        judge("http_1record_p99_16clients_ms", max(hr[fn]["1"][clients_key]["p99_ms"]
                                                   for fn in FUNCTIONS)),
        judge("http_errors", run.velocast_errors),
        judge("http_1000records_median_ms", max(hr[fn]["1000"]["1"]["median_ms"]
                                                for fn in FUNCTIONS)),
        judge("cold_start_s", max(run.cold[fn]["median_s"] for fn in FUNCTIONS)),
        judge("serving_rss_mb", max(max(run.serving_rss[fn]["rss_mb"],
                                        run.serving_rss[fn]["after_warmup"]["rss_mb"])
                                    for fn in FUNCTIONS)),
    ]
    if run.clients != 16:
        for t in targets:
            t["note"] += f" (run with {run.clients} clients, not 16)"
    results["targets"] = targets
    for key in REQUIRED_KEYS:  # a missing key is a bug in the bench
        get_path(results, key)
    return results


def write(run: Run, results: dict, out: Path) -> None:
    """results.json, latency.png and the table on stdout."""
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    latency_new, latency_old = run.new_ip["latency"], run.old_ip["latency"]
    samples = {
        "inproc1": {"old RF": latency_old["1"],
                    **{f"velocast {t}": v["1"] for t, v in latency_new.items()}},
        "inproc1000": {"old RF": latency_old["1000"],
                       **{f"velocast {t}": v["1000"] for t, v in latency_new.items()}},
        "http1": run.samples_http["1"], "http1000": run.samples_http["1000"],
    }
    title = (f"velocast vs old design: {run.source} data, {run.old_training['rows']:,} rows, "
             f"{os.cpu_count()} cores{', QUICK' if run.quick else ''} "
             f"({time.strftime('%Y-%m-%d %H:%M')})")
    draw_chart(samples, out / "latency.png", title)
    print(table(results))
    print(f"\nwrote {out / 'results.json'} and {out / 'latency.png'} in "
          f"{results['meta']['duration_s']:.0f} s")


def judge(name: str, value) -> dict:
    op, target, unit = TARGETS[name]
    met = None if value is None else (value >= target if op == ">=" else value <= target)
    return {"name": name, "op": op, "target": target, "unit": unit,
            "value": None if value is None else round(float(value), 3), "met": met,
            "note": TARGET_NOTES[name]}


def get_path(data: dict, dotted: str):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def fmt(value, unit="") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}{unit}"
        if abs(value) >= 10:
            return f"{value:.1f}{unit}"
        return f"{value:.3g}{unit}" if abs(value) < 1 else f"{value:.2f}{unit}"
    return f"{value}{unit}"


def table(results: dict) -> str:
    r = results
    rows: list[tuple] = []

    def add(figure, old=None, new=None, rat=None):
        rows.append((figure, fmt(old), fmt(new), "-" if rat is None else f"{rat:g}x"))

    art = r["artifacts"]
    default = r["meta"]["default_regress_model"]
    for t, b in art["velocast_onnx_bytes"].items():
        add(f"artifact MB ({t})", art["old_joblib_bytes"] / 1e6, b / 1e6,
            ratio(art["old_joblib_bytes"], b))
    for t, s in r["load"]["velocast_s"].items():
        add(f"load s ({t})", r["load"]["old_s"], s, ratio(r["load"]["old_s"], s))
    ra = r["rss_after_load"]
    add(f"RSS after load MB ({default})", ra["old_mb"], ra["velocast_default_mb"], ra["ratio"])
    add("RSS after load MB (all models)", ra["old_mb"], ra["velocast_all_mb"],
        ratio(ra["old_mb"], ra["velocast_all_mb"]))
    ip = r["inprocess"]
    for size in ("1", "1000"):
        for t, v in ip["velocast"].items():
            add(f"in-process {size} rec median ms ({t})", ip["old"][size]["median_ms"],
                v[size]["median_ms"], ip["speedup"][t][size])
            add(f"in-process {size} rec p99 ms ({t})", ip["old"][size]["p99_ms"],
                v[size]["p99_ms"], ratio(ip["old"][size]["p99_ms"], v[size]["p99_ms"]))
            add(f"in-process {size} rec CPU median ms ({t})",
                ip["old"][size].get("cpu_median_ms"), v[size].get("cpu_median_ms"),
                ip["speedup_cpu"][t][size])
    h = r["http"]
    for size in ("1", "1000"):
        for clients in ("1", "16"):
            o = h["old"][size][clients]
            for fn in FUNCTIONS:
                v = h[fn][size][clients]
                tag = f"HTTP {fn} {size} rec {clients} cl"
                add(f"{tag} median ms", o["median_ms"], v["median_ms"],
                    ratio(o["median_ms"], v["median_ms"]))
                add(f"{tag} p99 ms", o["p99_ms"], v["p99_ms"], ratio(o["p99_ms"], v["p99_ms"]))
                add(f"{tag} req/s", o["requests_per_s"], v["requests_per_s"],
                    ratio(v["requests_per_s"], o["requests_per_s"]))
                add(f"{tag} server CPU ms/req", o.get("server_cpu_ms_per_request"),
                    v.get("server_cpu_ms_per_request"),
                    ratio(o.get("server_cpu_ms_per_request"),
                          v.get("server_cpu_ms_per_request")))
    add("HTTP errors (velocast runs)", h["old_errors"], h["errors"])
    for fn in FUNCTIONS:
        add(f"serving RSS MB ({fn}, all models)", r["serving_rss"]["old"]["rss_mb"],
            r["serving_rss"][fn]["rss_mb"],
            ratio(r["serving_rss"]["old"]["rss_mb"], r["serving_rss"][fn]["rss_mb"]))
    for fn in FUNCTIONS:
        burst = r["serving_rss"]["cold_burst"][fn]
        loads = ", ".join(f"{k} x{v}" for k, v in sorted(burst["model_loads"].items()))
        add(f"serving RSS MB ({fn}, cold burst; loads {loads})", None, burst["rss_mb"])
    cs = r["cold_start"]
    for fn in FUNCTIONS:
        add(f"cold start s, median ({fn})", cs["old"]["median_s"], cs[fn]["median_s"],
            ratio(cs["old"]["median_s"], cs[fn]["median_s"]))
    for fn in FUNCTIONS:
        b = r["bundle"][fn]
        add(f"bundle installed MB ({fn})", r["bundle"]["old_estimate_mb"], b["installed_mb"],
            ratio(r["bundle"]["old_estimate_mb"], b["installed_mb"]))
    s = r["soak"]
    add(f"soak {s['seconds']:.0f}s x {s['clients']} cl: requests / errors", None,
        f"{s['requests']:,} / {s['errors']}")
    add("soak RSS start -> end MB (growth %)", None,
        f"{s['rss_start_mb']:.0f} -> {s['rss_end_mb']:.0f} ({s['rss_growth_pct']:+.1f}%)")
    width = max(len(x[0]) for x in rows)
    lines = [f"{'figure':<{width}}  {'old':>10}  {'velocast':>16}  {'ratio':>8}",
             "-" * (width + 40)]
    lines += [f"{a:<{width}}  {b:>10}  {c:>16}  {d:>8}" for a, b, c, d in rows]
    lines += ["", "targets:"]
    for t in r["targets"]:
        mark = "MET " if t["met"] else "MISS" if t["met"] is False else "n/a "
        lines.append(f"  [{mark}] {t['name']:<34} {t['op']} {t['target']:g}{t['unit']:<3} "
                     f"measured {fmt(t['value'])}{t['unit']}   ({t['note']})")
    return "\n".join(lines)


def draw_chart(samples: dict, path: Path, title: str) -> None:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = [("in-process, 1 record", samples["inproc1"], []),
              ("in-process, 1,000 records", samples["inproc1000"], []),
              ("HTTP, 1 record", samples["http1"],
               [(3.0, "target median 3 ms"), (25.0, "target p99 25 ms (16 clients)")]),
              ("HTTP, 1,000 records", samples["http1000"], [(20.0, "target median 20 ms")])]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, (name, series, lines) in zip(axes.flat, panels):
        for y, text in lines:
            ax.axhline(y, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(text, (0.01, y), xycoords=("axes fraction", "data"), fontsize=7,
                        color="grey", va="bottom")
        labels = [k for k, v in series.items() if v]
        data = [[x * 1000 for x in series[k]] for k in labels]
        if data:
            box = ax.boxplot(data, whis=(1, 99), showfliers=False, patch_artist=True)
            ax.set_xticks(range(1, len(labels) + 1), labels, rotation=25, ha="right",
                          fontsize=8)
            for patch, label in zip(box["boxes"], labels):
                patch.set_facecolor("#d9534f" if label.startswith("old") else "#5bc0de")
        ax.set_yscale("log")
        ax.set_xlabel("implementation (and concurrent clients)", fontsize=8)
        ax.set_ylabel("latency per request (ms, log scale)")
        ax.set_title(name + "  (box: quartiles, whiskers: p1-p99)", fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
