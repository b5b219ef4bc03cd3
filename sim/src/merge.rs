//! Merging the `run --json` lines of a sweep's shards into one summary per scenario.
//!
//! Each shard runs seeds `s` with `s % N == I`; their lines are summed (seeds, violations,
//! times, holder changes), their failing seeds joined, and their failover histograms added,
//! so the merged percentiles are exact to the millisecond (each gap rounded down to it). A sharded scenario must have every
//! shard exactly once: a missing or repeated shard is an error, not a smaller sweep.

use crate::sweep::{histogram_percentile, JsonSummary, FAILING_SEEDS_CAP};
use std::collections::BTreeMap;

/// Reads `run --json` lines from `text` (the contents of `file`): one summary per line,
/// blank lines skipped.
pub fn parse_lines(file: &str, text: &str) -> Result<Vec<JsonSummary>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{file}:{}: not a `leasehold-sim run --json` line: {e}", i + 1))
        })
        .collect()
}

/// Merges shards' summaries: one per scenario (same file, name, algorithm and swarm), in
/// the order they first appear.
pub fn merge(lines: Vec<JsonSummary>) -> Result<Vec<JsonSummary>, String> {
    let mut groups: Vec<Vec<JsonSummary>> = Vec::new();
    for l in lines {
        let same = |g: &Vec<JsonSummary>| {
            let h = &g[0];
            (&h.file, &h.name, &h.algorithm, h.swarm) == (&l.file, &l.name, &l.algorithm, l.swarm)
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.push(l),
            None => groups.push(vec![l]),
        }
    }
    groups.into_iter().map(merge_one).collect()
}

/// `(i, n)` of a shard written `I/N`.
fn shard_of(s: &str) -> Option<(u64, u64)> {
    let (i, n) = s.split_once('/')?;
    Some((i.trim().parse().ok()?, n.trim().parse().ok()?))
}

fn check_shards(g: &[JsonSummary]) -> Result<(), String> {
    let name = &g[0].file;
    let shards: Vec<Option<(u64, u64)>> = g.iter().map(|l| l.shard.as_deref().and_then(shard_of)).collect();
    if shards.iter().all(Option::is_none) {
        return Ok(());
    }
    let Some(Some((_, n))) = shards.first().copied() else {
        return Err(format!("{name}: some lines are shards and some are not"));
    };
    // Counted in a map, not a vector of N: N comes from the input.
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for s in &shards {
        match s {
            Some((i, m)) if *m == n && *i < n => *seen.entry(*i).or_insert(0) += 1,
            _ => return Err(format!("{name}: shards of different sweeps (all must be I/{n})")),
        }
    }
    let twice: Vec<String> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(i, _)| format!("{i}/{n}"))
        .collect();
    if !twice.is_empty() {
        return Err(format!("{name}: shard {} given more than once", twice.join(", ")));
    }
    if seen.len() as u64 != n {
        let missing: Vec<String> = (0..n)
            .filter(|i| !seen.contains_key(i))
            .take(10)
            .map(|i| format!("{i}/{n}"))
            .collect();
        let more = n - seen.len() as u64 - missing.len() as u64;
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Err(format!("{name}: shard {}{more} missing", missing.join(", ")));
    }
    Ok(())
}

fn merge_one(g: Vec<JsonSummary>) -> Result<JsonSummary, String> {
    check_shards(&g)?;
    let mut m = g[0].clone();
    m.shard = None;
    let first = g
        .iter()
        .filter_map(|l| l.first_failing_seed.map(|s| (s, l)))
        .min_by_key(|(s, _)| *s);
    m.first_failing_seed = first.map(|(s, _)| s);
    m.replay = first.and_then(|(_, l)| l.replay.clone());
    m.first_failing_faults = first.and_then(|(_, l)| l.first_failing_faults.clone());
    let mut failing: Vec<u64> = g.iter().flat_map(|l| l.failing_seeds.iter().copied()).collect();
    failing.sort_unstable();
    failing.truncate(FAILING_SEEDS_CAP);
    m.failing_seeds = failing;
    let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
    for l in &g {
        for (ms, n) in &l.failover_histogram_ms {
            *hist.entry(*ms).or_insert(0) += n;
        }
    }
    m.failover_histogram_ms = hist.into_iter().collect();
    let add = |f: fn(&JsonSummary) -> &Vec<(u64, u64)>| {
        let mut h: BTreeMap<u64, u64> = BTreeMap::new();
        for l in &g {
            for (x, n) in f(l) {
                *h.entry(*x).or_insert(0) += n;
            }
        }
        h.into_iter().collect::<Vec<_>>()
    };
    let least = |f: fn(&JsonSummary) -> Option<f64>| g.iter().filter_map(f).reduce(f64::min);
    m.availability_histogram = add(|l| &l.availability_histogram);
    m.availability_min = least(|l| l.availability_min);
    m.availability_p50 = histogram_percentile(&m.availability_histogram, 50.0).map(|b| b / 10_000.0);
    m.longest_gap_histogram_ms = add(|l| &l.longest_gap_histogram_ms);
    m.longest_gap_max_s = g.iter().filter_map(|l| l.longest_gap_max_s).reduce(f64::max);
    m.longest_gap_p50_s = histogram_percentile(&m.longest_gap_histogram_ms, 50.0).map(|ms| ms / 1_000.0);
    m.calm_tail_availability_histogram = add(|l| &l.calm_tail_availability_histogram);
    m.calm_tail_availability_min = least(|l| l.calm_tail_availability_min);
    m.calm_tail_availability_p50 =
        histogram_percentile(&m.calm_tail_availability_histogram, 50.0).map(|b| b / 10_000.0);
    m.failover_p50_ms = histogram_percentile(&m.failover_histogram_ms, 50.0);
    m.failover_p99_ms = histogram_percentile(&m.failover_histogram_ms, 99.0);
    m.seeds = g.iter().map(|l| l.seeds).sum();
    m.violations = g.iter().map(|l| l.violations).sum();
    m.sim_seconds = g.iter().map(|l| l.sim_seconds).sum();
    m.wall_seconds = g.iter().map(|l| l.wall_seconds).sum();
    m.leader_changes = g.iter().map(|l| l.leader_changes).sum();
    m.no_leader_seconds = g.iter().map(|l| l.no_leader_seconds).sum();
    m.claims = g.iter().map(|l| l.claims).sum();
    m.overlaps = g.iter().map(|l| l.overlaps).sum();
    m.writes_accepted = g.iter().map(|l| l.writes_accepted).sum();
    m.stale_writes_accepted = g.iter().map(|l| l.stale_writes_accepted).sum();
    m.guard_reports = g.iter().map(|l| l.guard_reports).sum();
    m.freeze_noticed_max_ms = g.iter().map(|l| l.freeze_noticed_max_ms).fold(0.0, f64::max);
    m.ok = if m.expected_violation {
        g.iter().any(|l| l.ok)
    } else {
        m.violations == 0
    };
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(shard: &str, seeds: u64, failing: &[u64], hist: &[(u64, u64)]) -> JsonSummary {
        JsonSummary {
            file: "s.toml".into(),
            name: "s".into(),
            algorithm: "lease".into(),
            swarm: false,
            shard: Some(shard.into()),
            seeds,
            violations: failing.len() as u64,
            failing_seeds: failing.to_vec(),
            first_failing_seed: failing.first().copied(),
            replay: failing.first().map(|s| format!("replay s.toml --seed {s}")),
            first_failing_faults: None,
            sim_seconds: seeds as f64 * 60.0,
            wall_seconds: 1.0,
            leader_changes: 3,
            failover_p50_ms: None,
            failover_p99_ms: None,
            failover_histogram_ms: hist.to_vec(),
            no_leader_seconds: 0.5,
            availability_min: Some(0.9),
            availability_p50: None,
            availability_histogram: vec![(9_000, 1), (9_900, seeds - 1)],
            longest_gap_max_s: Some(seeds as f64),
            longest_gap_p50_s: None,
            longest_gap_histogram_ms: vec![(1_000, seeds)],
            calm_tail_availability_min: None,
            calm_tail_availability_p50: None,
            calm_tail_availability_histogram: Vec::new(),
            claims: 10,
            overlaps: 1,
            writes_accepted: 0,
            stale_writes_accepted: 0,
            guard_reports: 0,
            freeze_noticed_max_ms: 0.0,
            expected_violation: false,
            ok: failing.is_empty(),
        }
    }

    #[test]
    fn shards_add_up_and_the_first_failing_seed_is_the_lowest() {
        let m = merge(vec![
            line("0/2", 5, &[8], &[(100, 2), (300, 1)]),
            line("1/2", 5, &[3, 7], &[(200, 1)]),
        ])
        .unwrap();
        assert_eq!(m.len(), 1);
        let m = &m[0];
        assert_eq!((m.seeds, m.violations, m.leader_changes, m.claims), (10, 3, 6, 20));
        assert_eq!(m.failing_seeds, vec![3, 7, 8]);
        assert_eq!(m.first_failing_seed, Some(3));
        assert_eq!(m.replay.as_deref(), Some("replay s.toml --seed 3"));
        assert_eq!(m.failover_histogram_ms, vec![(100, 2), (200, 1), (300, 1)]);
        assert_eq!((m.failover_p50_ms, m.failover_p99_ms), (Some(100.0), Some(300.0)));
        assert_eq!(m.availability_histogram, vec![(9_000, 2), (9_900, 8)]);
        assert_eq!((m.availability_min, m.availability_p50), (Some(0.9), Some(0.99)));
        assert_eq!((m.longest_gap_max_s, m.longest_gap_p50_s), (Some(5.0), Some(1.0)));
        assert_eq!(
            (m.calm_tail_availability_min, m.calm_tail_availability_p50),
            (None, None)
        );
        assert!(!m.ok && m.shard.is_none());
    }

    #[test]
    fn a_missing_or_repeated_shard_is_an_error() {
        let e = merge(vec![line("0/3", 5, &[], &[]), line("2/3", 5, &[], &[])]).unwrap_err();
        assert!(e.contains("shard 1/3 missing"), "{e}");
        let e = merge(vec![
            line("0/2", 5, &[], &[]),
            line("0/2", 5, &[], &[]),
            line("1/2", 1, &[], &[]),
        ])
        .unwrap_err();
        assert!(e.contains("0/2 given more than once"), "{e}");
        let e = merge(vec![line("0/2", 5, &[], &[]), line("1/3", 5, &[], &[])]).unwrap_err();
        assert!(e.contains("different sweeps"), "{e}");
        let e = merge(vec![line("0/4000000000", 5, &[], &[])]).unwrap_err();
        assert!(e.contains("shard 1/4000000000, ") && e.contains("more missing"), "{e}");
    }

    #[test]
    fn a_known_bad_scenario_is_caught_if_any_shard_caught_it() {
        let mut a = line("0/2", 5, &[], &[]);
        let mut b = line("1/2", 2, &[1], &[]);
        for l in [&mut a, &mut b] {
            l.expected_violation = true;
        }
        a.ok = false;
        b.ok = true;
        assert!(merge(vec![a, b]).unwrap()[0].ok);
    }

    #[test]
    fn bad_lines_name_their_file_and_line() {
        let e = parse_lines("shard-3.json", "\n{\"name\": 1}\n").unwrap_err();
        assert!(e.starts_with("shard-3.json:2: not a"), "{e}");
    }
}
