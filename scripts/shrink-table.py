#!/usr/bin/env python3
"""Shrinks the first failing seed of every known-bad scenario; prints a Markdown table of
fault steps, nodes and duration before and after, and the simulations used.

    cargo build --release -p leasehold-sim
    python3 scripts/shrink-table.py
"""
import json, pathlib, re, subprocess, sys, tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIM = ROOT / "target" / "release" / "leasehold-sim"


def main():
    if not SIM.exists():
        sys.exit("build first: cargo build --release -p leasehold-sim")
    print("| known-bad scenario | seed | fault steps | nodes | duration | simulations | fails with seed |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for f in sorted((ROOT / "scenarios" / "known-bad").glob("*.toml")):
            rel = f.relative_to(ROOT)
            run = subprocess.run([str(SIM), "run", str(rel), "--json"], capture_output=True, text=True, cwd=ROOT)
            seed = json.loads(run.stdout.splitlines()[0])["first_failing_seed"]
            out = pathlib.Path(d) / f.name
            sh = subprocess.run([str(SIM), "shrink", str(rel), "--seed", str(seed), "--out-file", str(out)],
                                capture_output=True, text=True, cwd=ROOT)
            line = (sh.stdout.splitlines() or [sh.stderr.strip()])[0]
            m = re.match(r"shrunk in (\d+) simulations: fault steps (\d+) -> (\d+), nodes (\d+) -> (\d+), "
                         r"duration (.+?) -> (.+?), seed (\d+)", line)
            if not m:
                print(f"| `{f.stem}` | {seed} | {line} | | | | |")
                continue
            n, s0, s1, n0, n1, d0, d1, s = m.groups()
            print(f"| `{f.stem}` | {seed} | {s0} → {s1} | {n0} → {n1} | {d0} → {d1} | {n} | {s} |", flush=True)


if __name__ == "__main__":
    main()
