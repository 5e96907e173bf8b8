#!/usr/bin/env python3
"""Medians over every round of one or more ../shared/bench compare.sh result files, as the
Markdown table in BENCHMARKS.md: cpu µs/req and req/s for nginx, HAProxy, hitch and smq-edge
("proxy"), with smq-edge's ratios.

usage: medians.py /tmp/bench-run/results/compare-*.txt
"""
import collections
import statistics
import sys

rows = collections.defaultdict(lambda: {"rps": [], "cpu": []})
scenarios = []
for path in sys.argv[1:]:
    for line in open(path):
        f = line.split()
        if len(f) < 10 or not f[0].isdigit():
            continue
        scenario, target = f[1], f[2]
        if scenario not in scenarios:
            scenarios.append(scenario)
        rows[(scenario, target)]["rps"].append(float(f[3]))
        if f[8] != "-":
            rows[(scenario, target)]["cpu"].append(float(f[8]))


def med(scenario, target, what):
    values = rows[(scenario, target)][what]
    return statistics.median(values) if values else float("nan")


print("| scenario | nginx µs/req | haproxy µs/req | hitch µs/req | smq-edge µs/req | ÷ nginx | ÷ best L7 peer | "
      "nginx req/s | haproxy req/s | hitch req/s | smq-edge req/s | req/s ÷ nginx |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for s in scenarios:
    cpu = {t: med(s, t, "cpu") for t in ("nginx", "haproxy", "hitch", "proxy")}
    rps = {t: med(s, t, "rps") for t in ("nginx", "haproxy", "hitch", "proxy")}
    best = min(cpu["nginx"], cpu["haproxy"])
    print(f"| {s} | {cpu['nginx']:.1f} | {cpu['haproxy']:.1f} | {cpu['hitch']:.1f} | **{cpu['proxy']:.1f}** | "
          f"{cpu['proxy'] / cpu['nginx']:.2f} | {cpu['proxy'] / best:.2f} | {rps['nginx']:.0f} | {rps['haproxy']:.0f} | "
          f"{rps['hitch']:.0f} | **{rps['proxy']:.0f}** | {rps['proxy'] / rps['nginx']:.2f} |")
rounds = {len(v["rps"]) for v in rows.values()}
print(f"\nrounds per cell: {sorted(rounds)}")
