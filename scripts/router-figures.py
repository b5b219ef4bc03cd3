#!/usr/bin/env python3
"""Router figures of scenario files over seeds, added up: RPCs, RPCs that found no server,
the first-try rate, the spread of first choices (min / median p over seeds), and the
distance order. It replays each seed (`leasehold-sim replay FILE --seed S`) and reads the
`router:` line, so it measures any build of the simulator.

    python3 scripts/router-figures.py [--bin PATH] [--seeds N] FILE...

`--bin` defaults to target/release/leasehold-sim (CARGO_TARGET_DIR is honoured); `--seeds`
defaults to each file's `seeds` (or 20).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile


def file_seeds(path):
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*seeds\s*=\s*(\d+)", line)
            if m:
                return int(m.group(1))
    return 20


def parse(line):
    """The figures of one `router:` line, as a dict (keys missing from older builds absent)."""
    out = {}
    m = re.search(r"router: (\d+) RPCs, (\d+) found no server", line)
    out["rpcs"], out["failed"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"attempts per successful RPC \{([^}]*)\}", line)
    out["attempts"] = {int(k): int(v) for k, v in re.findall(r"(\d+): (\d+)", m.group(1))}
    m = re.search(r"first choices \{[^}]*\} \(chi-square p = ([-0-9.e]+)\)", line)
    out["spread_p"] = None if m is None or m.group(1) == "-" else float(m.group(1))
    m = re.search(r"distance order right for (\d+)/(\d+)", line)
    out["distance"] = (int(m.group(1)), int(m.group(2)))
    m = re.search(r"(\d+) found no server though a server was reachable and untried", line)
    out["untried"] = int(m.group(1)) if m else None
    m = re.search(r"(\d+) of them to other datacenters \((\d+) found no server, (\d+) at the first try\)", line)
    out["remote"] = tuple(int(g) for g in m.groups()) if m else (0, 0, 0)
    m = re.search(r"spread through the run: (\d+) rebalances judged \(chi-square p = ([-0-9.e]+)\)", line)
    out["run_spread_p"] = None if m is None or m.group(2) == "-" else float(m.group(2))
    m = re.search(r"distance order right in (\d+)/(\d+) samples", line)
    out["samples"] = (int(m.group(1)), int(m.group(2))) if m else None
    return out


def pct(a, b):
    return f"{100.0 * a / b:.2f} %" if b else "-"


def p_range(ps):
    return f"{min(ps):.3f} / {statistics.median(ps):.3f}" if ps else "-"


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--bin", default=os.path.join(target, "release", "leasehold-sim"))
    ap.add_argument("--seeds", type=int)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    print(
        "| scenario | RPCs: own dc + other dcs | found no server: own + other (of them untried) "
        "| first try: own / other | final spread p (min / median) | spread p through the run "
        "(min / median) | distance order right: final clients; samples | seeds with a violation |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for path in a.files:
        seeds = a.seeds or file_seeds(path)
        t = {k: 0 for k in ["rpcs", "failed", "first", "r_rpcs", "r_failed", "r_first", "untried", "viol"]}
        dist, samples, ps, run_ps, new = [0, 0], [0, 0], [], [], False
        for s in range(seeds):
            with tempfile.NamedTemporaryFile() as tmp:
                r = subprocess.run(
                    [a.bin, "replay", path, "--seed", str(s), "--trace", tmp.name],
                    capture_output=True,
                    text=True,
                )
            lines = r.stdout.splitlines()
            if not any("no violation" in l for l in lines):
                t["viol"] += 1
            line = next((l for l in lines if l.startswith("router: ")), None)
            if line is None:
                print(f"{path} seed {s}: no router line\n{r.stdout}{r.stderr}", file=sys.stderr)
                continue
            f = parse(line)
            t["rpcs"] += f["rpcs"]
            t["failed"] += f["failed"]
            t["first"] += f["attempts"].get(1, 0)
            t["r_rpcs"] += f["remote"][0]
            t["r_failed"] += f["remote"][1]
            t["r_first"] += f["remote"][2]
            dist[0] += f["distance"][0]
            dist[1] += f["distance"][1]
            if f["untried"] is not None:
                new = True
                t["untried"] += f["untried"]
            if f["samples"]:
                samples[0] += f["samples"][0]
                samples[1] += f["samples"][1]
            if f["spread_p"] is not None:
                ps.append(f["spread_p"])
            if f["run_spread_p"] is not None:
                run_ps.append(f["run_spread_p"])
        own = t["rpcs"] - t["r_rpcs"]
        print(
            f"| {path} ({seeds} seeds) | {own} + {t['r_rpcs']} | {t['failed'] - t['r_failed']} + {t['r_failed']}"
            f" ({t['untried'] if new else '-'}) | {pct(t['first'] - t['r_first'], own)} / {pct(t['r_first'], t['r_rpcs'])}"
            f" | {p_range(ps)} | {p_range(run_ps)} | {dist[0]}/{dist[1]}; "
            f"{str(samples[0]) + '/' + str(samples[1]) if new else '-'} | {t['viol']} |"
        )


if __name__ == "__main__":
    main()
