#!/usr/bin/env python3
"""Time from a moment of a scenario to its first lease claim, over seeds.

    cargo build --release -p leasehold-sim
    python3 scripts/time-to-leader.py scenarios/lease-calm-3.toml 0 20                # cold start
    python3 scripts/time-to-leader.py scenarios/lease-whole-cluster-restart.toml 5.1 50  # restart

Replays each seed (`leasehold-sim replay`) and reads the true time of the first `claim` line at
or after AFTER seconds; prints the median and the worst, in milliseconds. SIM overrides the
binary (to compare two builds).
"""
import os, pathlib, re, subprocess, sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIM = os.environ.get("SIM", str(ROOT / "target" / "release" / "leasehold-sim"))

scenario, after, seeds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
times = []
for seed in range(seeds):
    out = subprocess.run([SIM, "replay", scenario, "--seed", str(seed)], capture_output=True, text=True, cwd=ROOT)
    for line in out.stdout.splitlines():
        m = re.match(r"\s*([0-9.]+)s \S+ .*claim token", line)
        if m and float(m.group(1)) >= after:
            times.append(float(m.group(1)) - after)
            break
if not times:
    sys.exit(f"{scenario}: no claim after {after}s in {seeds} seeds")
times.sort()
print(f"{scenario} from {after}s: {len(times)} seeds, p50 {times[len(times)//2]*1000:.0f} ms, worst {times[-1]*1000:.0f} ms")
