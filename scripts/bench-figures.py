#!/usr/bin/env python3
"""Formats `herald bench` figures for BENCHMARKS.md.

  bench-figures.py row <run> <json>   one table row
  bench-figures.py median             the medians of the JSON lines on stdin
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
        f"| {s['duplicate_recipients']} |"
    )


def median(lines):
    runs = [json.loads(line) for line in lines if line.strip()]

    def m(key):
        return statistics.median(r[key] for r in runs)

    return (
        f"{m('messages_per_second'):.0f} msg/s, {m('herald_cpu_s_per_1k'):.3f} Herald CPU s "
        f"per 1k, {m('all_cpu_s_per_1k'):.3f} all-process CPU s per 1k, "
        f"{m('peak_rss_mb'):.0f} MB peak RSS"
    )


if __name__ == "__main__":
    if sys.argv[1] == "row":
        print(row(sys.argv[2], sys.argv[3]))
    else:
        print(median(sys.stdin))
