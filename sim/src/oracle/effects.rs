//! Effects: what the fenced store accepted. Beliefs may overlap under faults beyond the
//! lease's assumptions (a freeze stops every clock of a holder, which then believes in a lease
//! everyone else saw end); effects must not: every write the store accepts carries a token at
//! least as high as every write it accepted before, so no write under a token is accepted after
//! a write under a higher one (the fencing property). Judged as the store accepts, in constant
//! memory.

use super::{secs, Violation, ViolationKind};
pub use crate::workload::store::Write;

/// The effects oracle's state: the highest accepted write so far, and what was stale.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    /// Writes accepted.
    pub accepted: u64,
    /// Writes refused.
    pub refused: u64,
    /// Accepted writes whose token was below one accepted before.
    pub stale: u64,
    /// The first stale write, as a violation.
    pub first: Option<Violation>,
    top: Option<Write>,
}

impl Effects {
    /// Takes the next write the store handled.
    pub fn take(&mut self, w: Write) {
        if !w.accepted {
            self.refused += 1;
            return;
        }
        self.accepted += 1;
        match &self.top {
            Some(t) if w.token < t.token => {
                self.stale += 1;
                let detail = format!(
                    "the store accepted token {} from {} at {} after token {} from {} at {}",
                    w.token,
                    w.node,
                    secs(w.at),
                    t.token,
                    t.node,
                    secs(t.at)
                );
                self.first.get_or_insert(Violation {
                    kind: ViolationKind::StaleWrite,
                    at: w.at,
                    claims: Vec::new(),
                    detail,
                });
            }
            Some(t) if w.token == t.token => {}
            _ => self.top = Some(w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(at: u128, node: &str, token: u64, accepted: bool) -> Write {
        Write {
            at,
            node: node.into(),
            token,
            accepted,
        }
    }

    fn judge(writes: &[Write]) -> Effects {
        let mut e = Effects::default();
        writes.iter().cloned().for_each(|x| e.take(x));
        e
    }

    #[test]
    fn tokens_that_never_go_down_are_clean_and_a_lower_one_accepted_later_is_caught() {
        let ok = judge(&[
            w(1, "n0", 1, true),
            w(2, "n0", 1, true),
            w(3, "n1", 2, true),
            w(4, "n0", 1, false),
        ]);
        assert_eq!((ok.accepted, ok.refused, ok.stale), (3, 1, 0));
        assert!(ok.first.is_none());
        let bad = judge(&[
            w(1, "n0", 1, true),
            w(3, "n1", 2, true),
            w(4, "n0", 1, true),
            w(5, "n0", 1, true),
        ]);
        assert_eq!(bad.stale, 2, "every stale write is counted");
        let v = bad.first.unwrap();
        assert_eq!((v.kind, v.at), (ViolationKind::StaleWrite, 4));
        assert!(v.detail.contains("token 1 from n0") && v.detail.contains("after token 2 from n1"));
    }
}
