#!/usr/bin/env python3
"""Seeds to first catch of every planted bug, with and without `--swarm`.

For each known-bad scenario (and for each planted bug put into the broad
`lease-all-faults.toml` nemesis), runs 20 sweeps that start at different seeds
(`--first-seed k * 1000003`) and stop at the first seed that catches the bug; reports the
median and the worst number of seeds, as a Markdown table.

    cargo build --release -p leasehold-sim
    python3 scripts/seeds-to-first-catch.py [--sweeps 20] [--limit 100]

A sweep that does not catch the bug within --limit seeds counts as "> limit".
"""
import argparse, json, os, pathlib, re, statistics, subprocess, sys, tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIM = ROOT / "target" / "release" / "leasehold-sim"


def sweep(path, first, limit, swarm):
    args = [str(SIM), "run", str(path), "--json", "--first-seed", str(first), "--seeds", str(limit)]
    if swarm:
        args.append("--swarm")
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if out.returncode not in (0, 1):
        sys.exit(f"{path}: {out.stderr}")
    d = json.loads(out.stdout.splitlines()[0])
    return d["seeds"] if d["ok"] else None


def row(name, path, sweeps, limit):
    cells = [name]
    for swarm in (False, True):
        runs = [sweep(path, k * 1000003, limit, swarm) for k in range(sweeps)]
        caught = sorted(r for r in runs if r is not None)
        missed = len(runs) - len(caught)
        med = statistics.median([r if r is not None else limit + 1 for r in runs])
        med = f"{med:g}" if med <= limit else f"> {limit}"
        worst = f"> {limit} ({missed} of {sweeps} missed)" if missed else str(caught[-1])
        cells += [med, worst]
    return "| " + " | ".join(cells) + " |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--limit", type=int, default=100)
    a = ap.parse_args()
    if not SIM.exists():
        sys.exit("build first: cargo build --release -p leasehold-sim")
    print("| planted bug (scenario) | median | worst | median, --swarm | worst, --swarm |")
    print("|---|---|---|---|---|")
    bad = sorted((ROOT / "scenarios" / "known-bad").glob("*.toml"))
    for f in bad:
        print(row(f"`{f.stem}`", f.relative_to(ROOT), a.sweeps, a.limit), flush=True)
    base = (ROOT / "scenarios" / "lease-all-faults.toml").read_text()
    bugs = sorted({m for f in bad for m in re.findall(r'^bug = "(\w+)"', f.read_text(), re.M)})
    with tempfile.TemporaryDirectory() as d:
        for bug in bugs:
            text = re.sub(r"^\[membership\]\n", f'[membership]\nbug = "{bug}"\n', base, flags=re.M)
            text = re.sub(r"^violation = .*$", "violation = true", text, flags=re.M)
            if "[expect]" not in text:
                text += "\n[expect]\nviolation = true\n"
            p = pathlib.Path(d) / f"all-faults-{bug}.toml"
            p.write_text(text)
            print(row(f"`{bug}` in lease-all-faults", p, a.sweeps, a.limit), flush=True)


if __name__ == "__main__":
    main()
