//! Liveness and availability: in every calm stretch of a run (see [`super::calm`]) longer
//! than `leader_within`, and in the calm tail after the last fault, a lease is held within
//! `leader_within` of the stretch's start, and from then to the stretch's end the claims of
//! all nodes together leave no gap longer than `max_gap` (the failover bound). Its converse
//! for a cluster that cannot know the highest token in use (every state file lost): it must
//! wait for good.
//!
//! The rules, for a judged stretch `[a, b)` and the union `U` of the claims (true time,
//! half-open, claims of no length left out):
//! 1. `U` meets `[a, a + leader_within]` (the rule of the first oracle, now in every stretch);
//! 2. every gap of `U` inside `[a + leader_within, b)` (a gap that began earlier counts from
//!    `a + leader_within`) lasts at most `max_gap`.
//!
//! Both are a property of each gap of `U` alone ([`gap_fails`]), which is how the streaming
//! oracle judges a run whose claims it sees one at a time.

use super::{secs, TrueClaim, Violation, ViolationKind};

/// How one judged stretch fails, if it does, by a gap `[g1, g2)` of the claims' union
/// (`g2 = u128::MAX`: the claims never came back): `Some(at)`, the true time the stretch
/// failed.
pub fn gap_fails(gap: (u128, u128), stretch: (u128, u128), bound: u128, max_gap: u128) -> Option<u128> {
    let ((g1, g2), (a, b)) = (gap, stretch);
    let w = a.saturating_add(bound);
    if g1 <= a && g2 > w {
        return Some(w);
    }
    let (from, to) = (g1.max(w), g2.min(b));
    (to > from && to - from > max_gap).then(|| from + max_gap)
}

/// The maximal gaps of the union of `claims` (true time), in order, from 0: the last one
/// runs to `u128::MAX`.
pub fn gaps(claims: &[TrueClaim]) -> Vec<(u128, u128)> {
    let mut sorted: Vec<&TrueClaim> = claims.iter().filter(|c| c.until > c.from).collect();
    sorted.sort_by_key(|c| c.from);
    let (mut out, mut reach) = (Vec::new(), 0u128);
    for c in sorted {
        if c.from > reach {
            out.push((reach, c.from));
        }
        reach = reach.max(c.until);
    }
    out.push((reach, u128::MAX));
    out
}

/// Checks every judged stretch (in order, disjoint): at most one violation each, for the
/// first gap that fails it.
pub fn check_liveness(claims: &[TrueClaim], stretches: &[(u128, u128)], bound: u128, max_gap: u128) -> Vec<Violation> {
    let gaps = gaps(claims);
    let mut out = Vec::new();
    let mut first = 0;
    for &(a, b) in stretches {
        while first < gaps.len() && gaps[first].1 <= a {
            first += 1;
        }
        for &(g1, g2) in gaps[first..].iter().take_while(|g| g.0 < b) {
            let Some(at) = gap_fails((g1, g2), (a, b), bound, max_gap) else {
                continue;
            };
            let w = a.saturating_add(bound);
            let detail = if at == w && g1 <= a {
                format!("no lease held between {} (calm since then) and {}", secs(a), secs(w))
            } else {
                let (from, to) = (g1.max(w), g2.min(b));
                let since = if g1 < w {
                    format!(", no holder since {}", secs(g1))
                } else {
                    String::new()
                };
                format!(
                    "no lease held in [{}, {}), {} long, more than max_gap {} (calm since {}, judged from {}{since})",
                    secs(from),
                    secs(to),
                    secs(to - from),
                    secs(max_gap),
                    secs(a),
                    secs(w),
                )
            };
            // The claims on either side of the gap.
            let before = claims
                .iter()
                .filter(|c| c.until == g1 && c.until > c.from)
                .min_by_key(|c| (c.node, c.inc));
            let after = claims
                .iter()
                .filter(|c| c.from == g2 && c.until > c.from)
                .min_by_key(|c| (c.node, c.inc));
            out.push(Violation {
                kind: ViolationKind::NoLeader,
                at,
                claims: before.into_iter().chain(after).cloned().collect(),
                detail,
            });
            break;
        }
    }
    out
}

/// Checks that no claim is held after `from` (a cluster that must wait for good).
pub fn check_waiting(claims: &[TrueClaim], from: u128) -> Option<Violation> {
    let c = claims
        .iter()
        .filter(|c| c.until > from && c.until > c.from)
        .min_by_key(|c| (c.from.max(from), c.node, c.inc))?;
    Some(Violation {
        kind: ViolationKind::LeaderWhileWaiting,
        at: c.from.max(from),
        claims: vec![c.clone()],
        detail: format!("{c} after {}, when the cluster had to wait for good", secs(from)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(node: usize, from: u128, until: u128) -> TrueClaim {
        TrueClaim {
            node,
            id: format!("n{node}"),
            inc: 1,
            token: Some(1),
            from,
            until,
        }
    }

    fn kinds(v: &[Violation]) -> Vec<u128> {
        v.iter().map(|v| v.at).collect()
    }

    #[test]
    fn a_first_leader_must_come_within_the_bound() {
        let claims = [c(0, 0, 10)];
        assert!(
            check_liveness(&claims, &[(5, 50)], 10, 100).is_empty(),
            "held at the start"
        );
        assert_eq!(kinds(&check_liveness(&claims, &[(10, 50)], 5, 100)), vec![15]);
        assert!(check_liveness(&[c(0, 14, 50)], &[(10, 50)], 5, 100).is_empty());
        assert!(
            check_liveness(&[c(0, 15, 50)], &[(10, 50)], 5, 100).is_empty(),
            "at the bound itself"
        );
        assert_eq!(kinds(&check_liveness(&[c(0, 16, 50)], &[(10, 50)], 5, 100)), vec![15]);
    }

    #[test]
    fn a_cluster_that_elects_once_and_then_sits_leaderless_is_caught() {
        // The measured case of issue 24: one claim early on, then nothing.
        let v = check_liveness(&[c(0, 1, 3)], &[(0, 300)], 4, 2);
        assert_eq!(kinds(&v), vec![6]);
        assert!(v[0].detail.contains("more than max_gap"), "{}", v[0].detail);
        assert_eq!(v[0].claims, vec![c(0, 1, 3)]);
    }

    #[test]
    fn gaps_up_to_max_gap_pass_and_longer_ones_fail_once_per_stretch() {
        let claims = [c(0, 0, 10), c(1, 12, 20), c(0, 23, 30), c(1, 35, 40)];
        assert!(check_liveness(&claims, &[(0, 40)], 5, 5).is_empty());
        let v = check_liveness(&claims, &[(0, 40)], 5, 2);
        assert_eq!(kinds(&v), vec![22], "the gap [20, 23) is the first longer than 2");
        assert_eq!(v[0].claims, vec![c(1, 12, 20), c(0, 23, 30)]);
        // The stretch ends at 40 and a new one starts at 50: the gap after 40 counts only
        // inside each, and the second stretch has nobody.
        let v = check_liveness(&claims, &[(0, 40), (50, 70)], 5, 5);
        assert_eq!(kinds(&v), vec![55]);
    }

    #[test]
    fn a_gap_that_began_before_the_judged_window_counts_from_it() {
        // Held [0, 4), nothing until 9; judged from 5 (bound 5), so 4 ns of gap count.
        let claims = [c(0, 0, 4), c(1, 9, 30)];
        assert!(check_liveness(&claims, &[(0, 30)], 5, 4).is_empty());
        let v = check_liveness(&claims, &[(0, 30)], 5, 3);
        assert_eq!(kinds(&v), vec![8]);
        assert!(v[0].detail.contains("no holder since 0.000000004s"), "{}", v[0].detail);
    }

    #[test]
    fn a_gap_cut_off_by_the_stretch_end_counts_to_it() {
        let claims = [c(0, 0, 20)];
        assert!(check_liveness(&claims, &[(0, 23)], 5, 3).is_empty());
        assert_eq!(kinds(&check_liveness(&claims, &[(0, 24)], 5, 3)), vec![23]);
    }

    #[test]
    fn overlapping_and_empty_claims_make_one_union() {
        let claims = [c(0, 0, 10), c(1, 5, 15), c(2, 15, 15), c(2, 14, 30)];
        assert_eq!(gaps(&claims), vec![(30, u128::MAX)]);
        assert!(check_liveness(&claims, &[(0, 30)], 1, 0).is_empty());
        assert_eq!(gaps(&[]), vec![(0, u128::MAX)]);
        assert_eq!(kinds(&check_liveness(&[], &[(3, 10)], 5, 100)), vec![8]);
    }

    /// The rules by brute force, on small integer times: the points of `[a, b)` held.
    fn brute(claims: &[TrueClaim], (a, b): (u128, u128), bound: u128, max_gap: u128) -> bool {
        let held = |t: u128| claims.iter().any(|c| c.from <= t && t < c.until);
        let w = a + bound;
        if !(a..=w).any(held) {
            return true;
        }
        // The longest run of unheld points inside [w, b).
        let (mut run, mut worst) = (0u128, 0u128);
        for t in w..b {
            run = if held(t) { 0 } else { run + 1 };
            worst = worst.max(run);
        }
        worst > max_gap
    }

    proptest! {
        /// On random claims and stretches, a stretch fails exactly when the brute-force
        /// reading of the two rules says so.
        #[test]
        fn agrees_with_brute_force(
            raw in prop::collection::vec((0usize..3, 0u128..60, 0u128..15), 0..12),
            cuts in prop::collection::btree_set(0u128..80, 0..6),
            bound in 0u128..10,
            max_gap in 0u128..8,
        ) {
            let claims: Vec<TrueClaim> = raw.iter().map(|(n, f, l)| c(*n, *f, f + l)).collect();
            let cuts: Vec<u128> = cuts.into_iter().collect();
            let stretches: Vec<(u128, u128)> = cuts
                .chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| (p[0], p[1]))
                .filter(|(a, b)| b - a > bound)
                .collect();
            let v = check_liveness(&claims, &stretches, bound, max_gap);
            let failing: Vec<(u128, u128)> = stretches
                .iter()
                .copied()
                .filter(|s| brute(&claims, *s, bound, max_gap))
                .collect();
            prop_assert_eq!(v.len(), failing.len(), "{:?} {:?}", v, failing);
            for (v, (a, b)) in v.iter().zip(&failing) {
                prop_assert!(v.at >= *a && v.at <= *b, "{:?} in {:?}", v, (a, b));
            }
        }
    }
}
