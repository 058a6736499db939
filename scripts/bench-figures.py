#!/usr/bin/env python3
"""Formats `herald bench` figures for BENCHMARKS.md.

  bench-figures.py row <run> <json>   one table row
  bench-figures.py median             the medians of the JSON lines on stdin
  bench-figures.py b3-row <run> <json> / b3-median   the same for B3's adaptation figures
  bench-figures.py b5-rows <run> <json> / b5-median  the same for B5's webhook figures
  bench-figures.py statements-rows <run> <json> / statements-median  the same for the
                                      Postgres statements' costs per row
"""
import json
import statistics
import sys


def row(run, figures):
    f = json.loads(figures)
    s = f["simulator"]
    window = max(s["max_per_second"].values()) if s["max_per_second"] else 0
    throttled = s["rejected"].get("130429", 0)
    return (
        f"| {run} | {f['messages_per_second']:.0f} | {f['herald_cpu_s_per_1k']:.3f} "
        f"| {f['all_cpu_s_per_1k']:.3f} | {f['peak_rss_mb']:.0f} | {window} | {throttled} "
        f"| {s['duplicate_recipients']} | {s.get('peak_in_flight', '')} of {f.get('in_flight_window', '')} |"
    )


def median(lines):
    runs = [json.loads(line) for line in lines if line.strip()]

    def m(key):
        return statistics.median(r[key] for r in runs)

    in_flight = statistics.median(r["simulator"].get("peak_in_flight", 0) for r in runs)
    return (
        f"{m('messages_per_second'):.0f} msg/s, {m('herald_cpu_s_per_1k'):.3f} Herald CPU s "
        f"per 1k, {m('all_cpu_s_per_1k'):.3f} all-process CPU s per 1k, "
        f"{m('peak_rss_mb'):.0f} MB peak RSS, {in_flight:.0f} sends in flight at most"
    )


def seconds(value):
    return "never" if value is None else f"{value:.1f}"


def b3_row(run, figures):
    f = json.loads(figures)
    return (
        f"| {run} | {seconds(f['seconds_to_90_percent'])} | {f['mean_rate_after']:.0f} "
        f"| {100 * f['rejected_share_after']:.2f}% "
        f"| {seconds(f['seconds_back_under_lowered_cap'])} |"
    )


def b3_median(lines):
    runs = [json.loads(line) for line in lines if line.strip()]

    def m(key):
        values = [r[key] for r in runs]
        # A run that never got there counts as the slowest.
        return statistics.median(float("inf") if v is None else v for v in values)

    return (
        f"{m('seconds_to_90_percent'):.1f} s to 90% of the hidden cap, "
        f"{m('mean_rate_after'):.0f} msg/s after, "
        f"{100 * m('rejected_share_after'):.2f}% answered 130429 after, "
        f"{m('seconds_back_under_lowered_cap'):.1f} s back under the lowered cap"
    )


def b5_rows(run, figures):
    return "\n".join(
        f"| {run} | {f['statuses_per_post']} | {f['requests_per_second']:.0f} "
        f"| {f['statuses_per_second_accepted']:.0f} | {f['p99_ms']:.2f} ms "
        f"| {f['statuses_per_second_applied']:.0f} |"
        for f in json.loads(figures)
    )


def b5_median(lines):
    runs = [json.loads(line) for line in lines if line.strip()]
    parts = []
    for size in sorted({f["statuses_per_post"] for r in runs for f in r}):
        of_size = [f for r in runs for f in r if f["statuses_per_post"] == size]

        def m(key):
            return statistics.median(f[key] for f in of_size)

        parts.append(
            f"{size} per POST: {m('requests_per_second'):.0f} req/s, "
            f"p99 {m('p99_ms'):.2f} ms, {m('statuses_per_second_applied'):.0f} statuses/s applied"
        )
    return "; ".join(parts)


def cpu(value):
    return "n/a" if value is None else f"{value:.1f}"


def statements_rows(run, figures):
    return "\n".join(
        f"| {run} | {p['name']} | {p['batch']} | {cpu(p['postgres_cpu_us_per_row'])} "
        f"| {p['wall_us_per_row']:.1f} |"
        for p in json.loads(figures)["phases"]
    )


def statements_median(lines):
    runs = [json.loads(line) for line in lines if line.strip()]
    parts = []
    for name in [p["name"] for p in runs[0]["phases"]]:
        phases = [p for r in runs for p in r["phases"] if p["name"] == name]
        cpus = [p["postgres_cpu_us_per_row"] for p in phases]
        median_cpu = None if None in cpus else statistics.median(cpus)
        wall = statistics.median(p["wall_us_per_row"] for p in phases)
        parts.append(f"{name} {cpu(median_cpu)} µs of Postgres CPU, {wall:.1f} µs wall a row")
    return "; ".join(parts)


if __name__ == "__main__":
    commands = {
        "row": row,
        "b3-row": b3_row,
        "b5-rows": b5_rows,
        "statements-rows": statements_rows,
    }
    if sys.argv[1] in commands:
        print(commands[sys.argv[1]](sys.argv[2], sys.argv[3]))
    elif sys.argv[1] == "b3-median":
        print(b3_median(sys.stdin))
    elif sys.argv[1] == "b5-median":
        print(b5_median(sys.stdin))
    elif sys.argv[1] == "statements-median":
        print(statements_median(sys.stdin))
    else:
        print(median(sys.stdin))
