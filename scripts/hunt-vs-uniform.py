#!/usr/bin/env python3
"""Simulations to the first catch of every planted bug from the broad scenario, three ways.

Each planted bug is put into `scenarios/lease-all-faults.toml` (no file shaped for it), and
the bug is hunted `--reps` times each way, on one CPU each:
  uniform  `run --jobs 1`, seeds from k * 1000003 in chunks of 10, until a seed fails;
  swarm    the same with `--swarm`;
  hunt     `hunt --budget CAP --seed k` (coverage-guided, see sim/src/hunt).
A catch is any violation of the file's expectation of none (safety or liveness). Reports
the median and the worst number of simulations (and the median wall time) per method, as
a Markdown table. A method that finds nothing in its first three repetitions is not run
further for that bug ("> limit (0 of 3)"). The row `none` hunts the library without a
planted bug: it must find nothing.

    cargo build --release -p leasehold-sim
    python3 scripts/hunt-vs-uniform.py [--reps 10] [--limit 100] [--cap 300] [--bugs a,b]
                                       [--methods uniform,swarm,hunt]
"""
import argparse, json, os, pathlib, re, statistics, subprocess, sys, tempfile, time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIM = pathlib.Path(os.environ.get("LEASEHOLD_SIM", ROOT / "target" / "release" / "leasehold-sim"))
# Router bugs need `[router]` clients, which the broad lease scenario has none of.
NOT_LEASE = {"unchecked_coordinates", "failover_from_front"}


def bugs():
    text = (ROOT / "src" / "config.rs").read_text()
    block = text[text.index("pub const ALL"):]
    block = block[:block.index("];")]
    names = re.findall(r"Bug::(\w+),", block)
    snake = [re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower() for n in names]
    return [b for b in snake if b not in NOT_LEASE]


def uniform(path, k, limit, swarm):
    """(simulations to the first failing seed, wall s) or (None, wall)."""
    first, ran, wall = k * 1000003, 0, 0.0
    while ran < limit:
        n = min(10, limit - ran)
        args = [str(SIM), "run", str(path), "--json", "--jobs", "1", "--first-seed", str(first + ran), "--seeds", str(n)]
        if swarm:
            args.append("--swarm")
        t = time.monotonic()
        out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        wall += time.monotonic() - t
        if out.returncode not in (0, 1):
            sys.exit(f"{path}: {out.stderr}")
        d = json.loads(out.stdout.splitlines()[0])
        if d["first_failing_seed"] is not None:
            return d["first_failing_seed"] - first + 1, wall
        ran += n
    return None, wall


def hunt(path, k, cap, out):
    args = [str(SIM), "hunt", str(path), "--json", "--budget", str(cap), "--seed", str(k),
            "--out-dir", out, "--shrink-trials", "0"]
    res = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if res.returncode not in (0, 1):
        sys.exit(f"{path}: {res.stderr}")
    d = json.loads(res.stdout.splitlines()[0])
    f = d["found"]
    return (f["run"], f["wall_s"]) if f else (None, d["wall_s"])


def cell(results, limit, reps):
    found = [r for r, _ in results if r is not None]
    missed = len(results) - len(found)
    med = statistics.median([r if r is not None else limit + 1 for r, _ in results])
    wall = statistics.median([w for _, w in results])
    med = f"{med:g}" if med <= limit else f"> {limit}"
    if missed and len(results) < reps:
        worst = f"> {limit} (0 of {len(results)})"
    elif missed:
        worst = f"> {limit} ({missed} of {len(results)} missed)"
    else:
        worst = str(max(found))
    return med, worst, f"{wall:.1f}", (statistics.median(found) if len(found) * 2 > len(results) else None)


def method(run_one, reps):
    results = []
    for k in range(reps):
        results.append(run_one(k))
        if k == 2 and all(r is None for r, _ in results):
            break
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--limit", type=int, default=100, help="seeds per uniform or swarm repetition")
    ap.add_argument("--cap", type=int, default=300, help="simulations per hunt repetition")
    ap.add_argument("--bugs", default="", help="comma-separated subset (default: every lease bug, and none)")
    ap.add_argument("--methods", default="uniform,swarm,hunt", help="comma-separated subset of uniform, swarm, hunt")
    a = ap.parse_args()
    if not SIM.exists():
        sys.exit("build first: cargo build --release -p leasehold-sim")
    chosen = a.bugs.split(",") if a.bugs else ["none"] + bugs()
    base = (ROOT / "scenarios" / "lease-all-faults.toml").read_text()
    print("| planted bug | uniform median | worst | swarm median | worst | hunt median | worst | wall s (uniform / swarm / hunt, median) | uniform ÷ hunt |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for bug in chosen:
            text = base if bug == "none" else re.sub(r"^\[membership\]\n", f'[membership]\nbug = "{bug}"\n', base, flags=re.M)
            p = pathlib.Path(d) / f"all-faults-{bug}.toml"
            p.write_text(text)
            on = a.methods.split(",")
            skip = ("–", "–", "–", None)
            u = cell(method(lambda k: uniform(p, k, a.limit, False), a.reps), a.limit, a.reps) if "uniform" in on else skip
            s = cell(method(lambda k: uniform(p, k, a.limit, True), a.reps), a.limit, a.reps) if "swarm" in on else skip
            h = cell(method(lambda k: hunt(p, k, a.cap, d), a.reps), a.cap, a.reps) if "hunt" in on else skip
            if u[3] and h[3]:
                ratio = f"{u[3] / h[3]:.1f}×"
            elif h[3]:
                ratio = f"> {a.limit / h[3]:.1f}×"
            else:
                ratio = "–"
            print(f"| `{bug}` | {u[0]} | {u[1]} | {s[0]} | {s[1]} | {h[0]} | {h[1]} | {u[2]} / {s[2]} / {h[2]} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
