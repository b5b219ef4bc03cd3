//! Agreement of the simulator with real processes, per figure (`leasehold-sim real
//! --compare`): the same seeds run for real and simulated, each figure taken per seed, and the
//! simulated median judged against the real runs' own spread.
//!
//! The rule: a figure agrees when the median of its simulated values lies within the range of
//! its real values (from the lowest to the highest real seed). With N real seeds that range
//! is the real world's own noise on this schedule; a simulated value outside it is one the
//! real runs did not produce.

use crate::report::RunReport;

/// The figures compared, in the order printed.
pub const FIGURES: [&str; 6] = [
    "leader changes",
    "failover p50 (ms)",
    "failover p99 (ms)",
    "no leader (s)",
    "availability (%)",
    "claims",
];

/// One seed's figures, in the order of [`FIGURES`] (`None`: the seed has no such value, as a
/// run without a failover has no failover percentile).
pub fn per_seed(r: &RunReport) -> [Option<f64>; 6] {
    let f = &r.figures;
    let pct = |p: f64| crate::sweep::percentile(&f.failovers_ms, p);
    let run = f.sim_time.as_secs_f64();
    let avail = (run > 0.0).then(|| 100.0 * (1.0 - f.no_leader.as_secs_f64() / run));
    [
        Some(f.leader_changes as f64),
        pct(50.0),
        pct(99.0),
        Some(f.no_leader.as_secs_f64()),
        avail,
        Some(f.claims as f64),
    ]
}

/// One figure compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// Which figure.
    pub figure: &'static str,
    /// The real values' lowest and highest (`None`: no real seed had one).
    pub real: Option<(f64, f64)>,
    /// The simulated values' median, lowest and highest.
    pub sim: Option<(f64, f64, f64)>,
    /// The simulated median lies within the real range (`None`: one side has no value).
    pub agrees: Option<bool>,
}

/// Every figure of `real` and `sim` seeds (each a list of [`per_seed`] rows) compared.
pub fn compare(real: &[[Option<f64>; 6]], sim: &[[Option<f64>; 6]]) -> Vec<Agreement> {
    FIGURES
        .iter()
        .enumerate()
        .map(|(k, figure)| {
            let values = |rows: &[[Option<f64>; 6]]| {
                let mut v: Vec<f64> = rows.iter().filter_map(|r| r[k]).collect();
                v.sort_by(f64::total_cmp);
                v
            };
            let (r, s) = (values(real), values(sim));
            let real = r.first().zip(r.last()).map(|(a, b)| (*a, *b));
            let sim = (!s.is_empty()).then(|| (median(&s), s[0], s[s.len() - 1]));
            let agrees = real.zip(sim).map(|((lo, hi), (m, _, _))| lo <= m && m <= hi);
            Agreement {
                figure,
                real,
                sim,
                agrees,
            }
        })
        .collect()
}

/// The median of sorted `v` (not empty).
fn median(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(changes: f64, p50: Option<f64>) -> [Option<f64>; 6] {
        [Some(changes), p50, p50, Some(1.0), Some(99.0), Some(60.0)]
    }

    #[test]
    fn a_simulated_median_inside_the_real_spread_agrees_and_one_outside_does_not() {
        let real = [row(3.0, Some(100.0)), row(5.0, Some(140.0)), row(4.0, None)];
        let sim = [row(4.0, Some(60.0)), row(4.0, Some(70.0)), row(9.0, Some(80.0))];
        let a = compare(&real, &sim);
        assert_eq!(a[0].real, Some((3.0, 5.0)));
        assert_eq!(a[0].sim, Some((4.0, 4.0, 9.0)), "median of 4, 4, 9");
        assert_eq!(a[0].agrees, Some(true));
        assert_eq!(
            a[1].real,
            Some((100.0, 140.0)),
            "the seed without a failover has no p50"
        );
        assert_eq!(a[1].agrees, Some(false), "70 ms is outside 100..140 ms");
    }

    #[test]
    fn a_figure_one_side_lacks_is_neither_agreement_nor_disagreement() {
        let a = compare(&[row(2.0, None)], &[row(2.0, Some(50.0))]);
        assert_eq!(a[1].agrees, None);
        assert_eq!(a[0].agrees, Some(true));
    }
}
