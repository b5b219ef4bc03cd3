#!/bin/sh
# Peak memory of long runs and long sweeps (Linux; needs GNU time, /usr/bin/time):
#   1. one 5-node full-nemesis run of 1 simulated hour, then of 24 hours;
#   2. a sweep of 1,000 seeds, then of 10,000 seeds, of the same scenario (--json), one seed
#      at a time (--jobs 1: with N jobs, N runs are in memory at once).
#
#   cargo build --release -p leasehold-sim && sh scripts/memory.sh
set -eu
cd "$(dirname "$0")/.."
SIM=${SIM:-./target/release/leasehold-sim}
F=scenarios/lease-all-faults.toml
peak() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1; }
for d in 1h 24h; do
  echo "run of $d: peak $(peak $SIM run $F --seeds 1 --duration $d) KB"
done
for n in 1000 10000; do
  echo "sweep of $n seeds: peak $(peak $SIM run $F --seeds $n --json --jobs 1) KB"
done
