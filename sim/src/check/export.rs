//! A counterexample as a scenario file: the same cluster, the same clock rates, quantised time
//! on the checker's tick (`[network] tick`), every fault a scripted `[[at]]` step at its tick,
//! and `[expect]` the violation found. `leasehold-sim replay` runs it in the simulator step for
//! step, and `leasehold-sim real` runs its schedule against real processes when it has no
//! fault on a single message.

use super::{CheckOptions, Counterexample, Violation};
use crate::scenario::{At, Dur, Expected, ExpectedKind, NodeSpec, Scenario};
use std::time::Duration;

impl Counterexample {
    /// The counterexample as a scenario file (a comment with the path, then TOML), or why it
    /// has no scenario form (a path with a clone, whose steps no scenario can name apart
    /// from its original's).
    pub fn scenario(&self, opts: &CheckOptions) -> Result<String, String> {
        let mut scn: Scenario = toml::from_str("").map_err(|e| format!("cannot start an empty scenario: {e}"))?;
        scn.name = format!(
            "check counterexample: {} ({})",
            match self.kind {
                Violation::Overlap => "two holders",
                Violation::TokenOrder => "a token not above an earlier one",
                Violation::NoLeader => "no leader",
            },
            opts.bug.map_or("no bug planted", |b| b.name())
        );
        scn.seeds = 1;
        scn.first_seed = self.seed;
        scn.algorithm = opts.algorithm;
        scn.membership.lease = Some(Dur(opts.lease));
        scn.membership.beat = Some(Dur(opts.beat));
        scn.membership.max_drift_ppm = Some(opts.drift_ppm);
        scn.membership.bug = opts.bug;
        scn.network.tick = Some(Dur(opts.tick.unwrap_or(opts.beat)));
        scn.node = self
            .drift_ppm
            .iter()
            .enumerate()
            .map(|(i, ppm)| NodeSpec {
                drift_ppm: Some(*ppm),
                cluster_size: opts.misconfigured_size.filter(|_| i == 0),
                lease: opts.misconfigured_lease.filter(|_| i == 0).map(Dur),
                ..NodeSpec::default()
            })
            .collect();
        let mut last = Duration::ZERO;
        for st in &self.steps {
            let steps = st.scenario.clone()?;
            let time = Duration::from_nanos(u64::try_from(st.at).unwrap_or(u64::MAX));
            for step in steps {
                last = time;
                scn.at.push(At { time: Dur(time), step });
            }
        }
        let end = Duration::from_nanos(u64::try_from(self.steps.last().map_or(0, |s| s.at)).unwrap_or(u64::MAX));
        scn.expect.violation = Expected::Kind(match self.kind {
            Violation::Overlap => ExpectedKind::Overlap,
            Violation::TokenOrder => ExpectedKind::TokenOrder,
            Violation::NoLeader => ExpectedKind::NoLeader,
        });
        // Time for the violation to show: a claim's lease, or, for liveness, the settling
        // time the checker gave the cluster after its last fault.
        if self.kind == Violation::NoLeader {
            scn.expect.leader_within = Some(Dur(end.saturating_sub(last)));
        }
        scn.duration = Dur(end + opts.lease + opts.beat * 10);
        let toml = scn.to_toml()?;
        let mut head = format!(
            "# A counterexample found by `leasehold-sim {}`.\n\
             # Replay: leasehold-sim replay FILE --seed {}\n#\n",
            command_line(opts, &self.drift_ppm, self.seed),
            self.seed
        );
        for line in self.render().lines() {
            head.push_str(&format!("# {line}\n"));
        }
        let text = format!("{head}\n{toml}");
        // Written only if it reads back.
        Scenario::parse("counterexample.toml", &text)
            .map_err(|e| format!("the counterexample's scenario does not read back: {e}"))?;
        Ok(text)
    }
}

/// The `check` command line that explores `opts` in the clock assignment `clocks`.
fn command_line(opts: &CheckOptions, clocks: &[i64], seed: u64) -> String {
    let mut c = format!(
        "check --nodes {} --depth {} --budget {} --faults {} --lease {:?} --beat {:?} --drift-ppm {}",
        opts.nodes,
        opts.depth,
        opts.budget,
        opts.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(","),
        opts.lease,
        opts.beat,
        opts.drift_ppm
    );
    if opts.algorithm == leasehold::Algorithm::Allcall {
        c.push_str(" --algorithm allcall");
    }
    if let Some(t) = opts.tick {
        c.push_str(&format!(" --tick {t:?}"));
    }
    if let Some(b) = opts.bug {
        c.push_str(&format!(" --bug {}", b.name()));
    }
    if let Some(n) = opts.misconfigured_size {
        c.push_str(&format!(" --misconfigured-size {n}"));
    }
    if let Some(l) = opts.misconfigured_lease {
        c.push_str(&format!(" --misconfigured-lease {l:?}"));
    }
    let clocks: Vec<String> = clocks.iter().map(i64::to_string).collect();
    c.push_str(&format!(" --clocks={}", clocks.join(",")));
    if seed > 0 {
        // Seeds are explored from 0: this one is the last needed.
        c.push_str(&format!(" --seeds {}", seed + 1));
    }
    c
}
