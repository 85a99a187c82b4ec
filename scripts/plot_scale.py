#!/usr/bin/env python3
"""Plots the scale curves of `bench_suite scale` (scripts/bench.sh, or
scripts/bench_scale.sh alone) as PNG files beside bench/RESULTS.md, and
writes their section into RESULTS.md (replacing an earlier one).

    python3 scripts/plot_scale.py SCALE_JSON BENCH_DIR
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HEADING = "## How cost grows (scale curves)"


def figure(path, title, xlabel, ylabel, series, logx=False):
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for label, xs, ys in series:
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    ax.set_xticks([x for _, xs, _ in series for x in xs])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    data = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    fleet, startup, append, refresh = data["fleet"], data["startup"], data["append"], data["refresh"]

    n = [f["instances"] for f in fleet]
    figure(out / "scale_fleet.png", "Propagation against fleet size", "instances",
           "ms (until every other instance rejects)",
           [("p50", n, [f["p50_ms"] for f in fleet]), ("p99", n, [f["p99_ms"] for f in fleet])])
    figure(out / "scale_log_reads.png", "Log reads against fleet size", "instances",
           "reads of the log per second (whole fleet)",
           [("log reads/s", n, [f["log_reads_per_s"] for f in fleet])])
    w = [s["revoked_sessions"] for s in startup]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(w, [s["ready_ms"] for s in startup], marker="o", color="tab:blue", label="start-up (ms)")
    ax.set_xscale("log")
    ax.set_xlabel("revoked sessions in the window")
    ax.set_ylabel("start-up to ready (ms)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(w, [s["rss_growth_mib"] for s in startup], marker="s", color="tab:red", label="memory (MiB)")
    ax2.set_ylabel("RSS growth (MiB)", color="tab:red")
    ax.set_title("Start-up and memory against the revocation window")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "scale_window.png")
    plt.close(fig)
    wr = [a["writers"] for a in append]
    figure(out / "scale_append.png", "Appends to the PostgreSQL log against writers", "concurrent writers",
           "events appended per second", [("appends/s", wr, [a["appends_per_s"] for a in append])])

    lines = [HEADING, ""]
    lines.append(f"Measured by `bench_suite scale` on {data['cores']} cores (PostgreSQL, Redis and the "
                 "instances share them). Plots: `bench/scale_*.png`.")
    lines.append("")
    lines.append("| instances | propagation p50 (ms) | p99 (ms) | max (ms) | log reads/s (fleet) | per instance |")
    lines.append("|---|---|---|---|---|---|")
    for f in fleet:
        lines.append(f"| {f['instances']} | {f['p50_ms']} | {f['p99_ms']} | {f['max_ms']} | "
                     f"{f['log_reads_per_s']} | {f['log_reads_per_s_per_instance']} |")
    lines += ["", "![propagation against fleet size](scale_fleet.png) ![log reads against fleet size](scale_log_reads.png)", ""]
    lines.append("| revoked sessions in the window | start-up to ready (ms) | RSS growth (MiB) |")
    lines.append("|---|---|---|")
    for s in startup:
        lines.append(f"| {s['revoked_sessions']:,} | {s['ready_ms']} | {s['rss_growth_mib']} |")
    lines += ["", "![start-up and memory against the window](scale_window.png)", ""]
    lines.append("| concurrent writers | appends/s (PostgreSQL, one event per store call, group commit) |")
    lines.append("|---|---|")
    for a in append:
        lines.append(f"| {a['writers']} | {a['appends_per_s']:.0f} |")
    lines += ["", "![appends against writers](scale_append.png)", ""]
    lines.append(f"Refresh throughput on PostgreSQL through Recall's refresh path ({refresh['callers']} sessions "
                 f"refreshed concurrently): **{refresh['refreshes_per_s']:.0f}/s on {refresh['cores']} cores = "
                 f"{refresh['per_core']:.0f}/s per core** (goal {refresh['goal_per_core']}/s per core; "
                 f"Keycloak's sizing guide gives {refresh['keycloak_sizing_per_vcpu']}/s per vCPU).")
    lines.append("")
    notes = out / "SCALE_NOTES.md"
    if notes.exists():
        lines.append(notes.read_text().strip())
        lines.append("")
    section = "\n".join(lines)

    results = out / "RESULTS.md"
    text = results.read_text() if results.exists() else ""
    if HEADING in text:
        before, _, rest = text.partition(HEADING)
        after = rest.split("\n## ", 1)
        text = before + section + ("\n## " + after[1] if len(after) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results.write_text(text.rstrip("\n") + "\n")
    print(f"wrote {out}/scale_*.png and the section in {results}")


if __name__ == "__main__":
    main()
