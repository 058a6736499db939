#!/usr/bin/env python3
"""Postgres's own CPU per statement, from a server log written with `log_statement_stats = on`.

Each statement's parse, bind and execute steps are logged with the backend's user and system
CPU (getrusage); this sums them by step and statement (its first 90 characters) and prints the
largest. CPU time, not wall time: unlike `pg_stat_statements`' times it leaves out lock waits
and the time a backend waited for a core on a busy machine.

    scripts/pg-statement-cpu.py postgres.log [how many rows, 25 by default]

Used for BENCHMARKS.md with a private Postgres (`log_statement_stats = on` in its
postgresql.conf) given to `herald bench` through HERALD__DATABASE__URL.
"""

import collections
import re
import sys

HEADER = re.compile(r"^\S+ \S+ \S+ \[\d+\] (\w+):\s+(.*)")
USAGE = re.compile(r"([\d.]+) s user, ([\d.]+) s system")


def main() -> None:
    lines = open(sys.argv[1], errors="replace").read().split("\n")
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    spent = collections.defaultdict(lambda: [0, 0.0, 0.0])
    i = 0
    while i < len(lines):
        header = HEADER.match(lines[i])
        if not (header and header.group(1) == "LOG" and "STATISTICS" in header.group(2)):
            i += 1
            continue
        step = header.group(2).split()[0]
        user = system = None
        i += 1
        # The DETAIL entry with the usage, then (for a statement) its STATEMENT entry.
        while i < len(lines):
            next_header = HEADER.match(lines[i])
            if next_header and next_header.group(1) != "DETAIL":
                break
            usage = USAGE.search(lines[i])
            if usage and user is None:  # the step's own, before the backend's running total
                user, system = float(usage.group(1)), float(usage.group(2))
            i += 1
        statement = ""
        if i < len(lines) and (h := HEADER.match(lines[i])) and h.group(1) == "STATEMENT":
            statement = h.group(2)
            i += 1
            while i < len(lines) and not HEADER.match(lines[i]):
                statement += " " + lines[i].strip()
                i += 1
        row = spent[(step, re.sub(r"\s+", " ", statement)[:90])]
        row[0] += 1
        row[1] += user or 0.0
        row[2] += system or 0.0
    total = sum(user + system for _, user, system in spent.values())
    print(f"all statements: {total:.3f} CPU s")
    print("  calls   user s  system s  step      statement")
    ranked = sorted(spent.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))
    for (step, statement), (calls, user, system) in ranked[:top]:
        print(f"{calls:7d} {user:8.3f} {system:9.3f}  {step:8s}  {statement}")


if __name__ == "__main__":
    main()
