"""bench.attack's table and chart: before and after side by side (see bench/attack.py)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

def fmt(value, unit="", none="-") -> str:
    return none if value is None else f"{value:g}{unit}" if isinstance(value, float) \
        else f"{value}{unit}"


def table(result: dict) -> str:
    b, a = result["before"], result["after"]
    cap = result["settings"]["cap_s"]
    rows = []
    for key in [k for k in a if k.startswith("padding_x")]:
        label = f"a. padding {key[9:]}x {a[key]['body_bytes'] / 1e6:.1f} MB"
        rows += [(f"{label}: statuses", *(json.dumps(s[key]["statuses"]) for s in (b, a))),
                 (f"{label}: worker RSS start -> peak (VmHWM) -> +3 s, MB",
                  *(f"{s[key]['rss_start_mb']:g} -> {s[key]['rss_peak_sampled_mb']:g} "
                    f"({s[key]['vmhwm_mb']:g}) -> {s[key]['rss_3s_after_mb']:g}" for s in (b, a))),
                 (f"{label}: slowest answer", *(fmt(s[key]["slowest_s"], " s") for s in (b, a)))]
    if "padding_repeated_rss_3s_after_mb" in a:
        rows.append((f"a. padding {len(a['padding_repeated_rss_3s_after_mb'])} more times: "
                     "RSS +3 s after each, MB", "(not run)",
                     " ".join(f"{mb:g}" for mb in a["padding_repeated_rss_3s_after_mb"])))
    if "padding_keyless_repeated" in a:
        runs = a["padding_keyless_repeated"]
        rows.append((f"a. padding x8 without the key, {len(runs)} times: statuses; RSS +3 s, MB",
                     "(not run)", f"{json.dumps(runs[0]['statuses'])}; {runs[0]['rss_start_mb']:g}"
                     " -> " + " ".join(f"{one['rss_3s_after_mb']:g}" for one in runs)))
    rows.append(("b. GET /health with 8 stalled bodies", *(
        f"{s['stalled_health']['health_status']} in {s['stalled_health']['health_seconds']:g} s"
        if s["stalled_health"]["health_seconds"] is not None else f"no answer in {cap:g} s"
        for s in (b, a))))
    rows.append(("c. declared 10 GB body: first byte of the answer", *(
        f"{s['huge_body']['status_line']} in {s['huge_body']['first_byte_s']:g} s"
        if s["huge_body"]["first_byte_s"] is not None else f"no answer in {cap:g} s"
        for s in (b, a))))
    rows.append(("c. ... server stops taking the body after", *(
        fmt(s["huge_body"]["server_stopped_reading_after_s"], " s", "never (client gave up)")
        for s in (b, a))))
    load_keys = ("requests", "ok", "5xx", "stuck", "median_ms", "max_s", "refreshes",
                 "stalled_cut_and_reopened", "rss_start_mb", "rss_peak_mb", "rss_5s_after_mb",
                 "rss_back_within_10pct")
    for key in load_keys:
        rows.append((f"d. load: {key}", *(fmt(s["load"][key]) if "load" in s else "(not run)"
                                          for s in (b, a))))
    if "load_no_stalled" in a:
        rows.append(("d. same load without stalled connections: requests, max_s", "(not run)",
                     f"{a['load_no_stalled']['requests']}, {a['load_no_stalled']['max_s']:g}"))
    width = max(len(r[0]) for r in rows)
    widths = [max(len(str(r[i])) for r in rows) for i in (1, 2)]
    before = "before " + result["settings"]["before"]
    lines = [f"{'':<{width}}  {before:<{widths[0]}}  after (this tree)"]
    lines += [f"{r[0]:<{width}}  {str(r[1]):<{widths[0]}}  {r[2]}" for r in rows]
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    with contextlib.suppress(ImportError):
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        keys = [k for k in result["after"] if k.startswith("padding_x")]
        fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.4), sharey=True)
        names = {"before": f"before ({result['settings']['before']})", "after": "after (this tree)"}
        for ax, key in zip(axes, keys):
            for side, style in (("before", "-"), ("after", "--")):
                trace = result[side][key]["trace"]
                answers = ", ".join(f"{n:,} x HTTP {status}" for status, n in
                                    sorted(result[side][key]["statuses"].items()))
                ax.plot([t for t, _ in trace], [mb for _, mb in trace], style,
                        label=f"{names[side]}: {answers}")
            clients = key[len("padding_x"):]
            ax.set(title=f"{clients} padded request(s) at once",
                   xlabel="time since the attack started (s)",
                   ylabel="gunicorn worker memory, RSS (MB)")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.suptitle("Padding attack: worker memory while padded JSON bodies are sent")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
