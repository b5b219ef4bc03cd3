//! Scenario files: the TOML format of `scenarios/*.toml` (documented key by key in
//! `scenarios/README.md`), parsed with errors that name the file, the line and the key, and
//! written back (shrunk scenarios, generated schedules) through the same model.

pub(crate) mod duration;
mod error;
mod spec;
mod step;
mod validate;

pub use validate::MAX_REPLAY_WINDOW;

pub use duration::{secs, Dur, DurRange};
pub use error::ScenarioError;
pub use leasehold::Bug;
pub use spec::{
    Application, ClockDriftFault, ClockOffsetFault, ClockStepFault, CongestFault, DcLink, Expect, Expected,
    ExpectedKind, FaultSpec, ForgeFault, LagFault, LatencySpikeFault, LossSpikeFault, MembershipSpec, NetworkSpec,
    NodeSpec, PartitionFault, PartitionKind, PauseFault, ReplayFault, RestartFault, RouterSpec, SitesFault,
    SlowConsumerFault, StateLossFault, WorkloadSpec,
};
pub use step::{
    At, ClockStepAt, CongestAt, DriftAt, LagAt, MessageAt, MessageFault, MessageKind, PreemptAt, ReplayAt, ResizeAt,
    RollbackAt, Step, SuspendAt,
};

use error::{key_at, key_of};
use leasehold::{Algorithm, BugKnobs};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// One scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name (defaults to the file stem).
    #[serde(default)]
    pub name: String,
    /// Election algorithm (default `lease`).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Number of nodes, when `[[node]]` tables are not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    /// Seeds swept by default (default 20).
    #[serde(default = "default_seeds")]
    pub seeds: u64,
    /// The first seed of the sweep (default 0): seeds `first_seed .. first_seed + seeds`.
    #[serde(default)]
    pub first_seed: u64,
    /// Simulated time per seed (default 60s).
    #[serde(default = "default_duration")]
    pub duration: Dur,
    /// Agent configuration overrides.
    #[serde(default)]
    pub membership: MembershipSpec,
    /// Route behaviour.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Explicit nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node: Vec<NodeSpec>,
    /// The random nemesis.
    #[serde(default)]
    pub faults: FaultSpec,
    /// The scripted timeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<At>,
    /// Expectations.
    #[serde(default)]
    pub expect: Expect,
    /// Router clients (optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterSpec>,
    /// Application workloads beside the agents.
    #[serde(default, skip_serializing_if = "WorkloadSpec::is_off")]
    pub workload: WorkloadSpec,
    /// Collect coverage ([`crate::coverage`]) as the run goes (set by `hunt`, never read from
    /// a file).
    #[serde(skip)]
    pub coverage: bool,
}

fn default_seeds() -> u64 {
    20
}

fn default_duration() -> Dur {
    Dur(Duration::from_secs(60))
}

/// A node of a resolved scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNode {
    /// Its ID.
    pub id: String,
    /// Its rank.
    pub rank: i64,
    /// Its datacenter.
    pub datacenter: String,
}

impl Scenario {
    /// Parses a scenario from TOML text; `file` names it in errors and defaults the name.
    pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().to_string();
            let key = key_of(&message).or_else(|| e.span().map(|sp| key_at(text, sp.start)));
            ScenarioError {
                file: file.to_string(),
                line,
                key,
                message,
            }
        })?;
        if s.name.is_empty() {
            s.name = Path::new(file)
                .file_stem()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        s.validate(file, text)?;
        Ok(s)
    }

    /// The scenario as TOML text that [`Scenario::parse`] reads back to the same scenario.
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| format!("cannot write scenario {:?} as TOML: {e}", self.name))
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            line: None,
            key: None,
            message: e.to_string(),
        })?;
        Scenario::parse(&file, &text)
    }

    /// The seeds swept by default.
    pub fn seed_list(&self) -> Vec<u64> {
        (self.first_seed..self.first_seed.saturating_add(self.seeds)).collect()
    }

    /// The nodes, with defaults resolved.
    pub fn sim_nodes(&self) -> Vec<SimNode> {
        if self.node.is_empty() {
            (0..self.nodes.unwrap_or(3))
                .map(|i| SimNode {
                    id: format!("n{i}"),
                    rank: i as i64,
                    datacenter: "dc1".into(),
                })
                .collect()
        } else {
            self.node
                .iter()
                .enumerate()
                .map(|(i, n)| SimNode {
                    id: n.id.clone().unwrap_or_else(|| format!("n{i}")),
                    rank: n.rank.unwrap_or(i as i64),
                    datacenter: n.datacenter.clone().unwrap_or_else(|| "dc1".into()),
                })
                .collect()
        }
    }

    /// Quantised time (`[network] tick`), if the scenario asks for it.
    pub(crate) fn quantum(&self) -> Option<crate::quantum::Quantum> {
        self.network.tick.map(|t| crate::quantum::Quantum::new(t.0.as_nanos()))
    }

    /// The agents' configuration, before the per-node fields.
    pub fn membership_cfg(&self) -> leasehold::MembershipCfg {
        let mut c = leasehold::MembershipCfg::default();
        let m = &self.membership;
        if let Some(d) = m.beat {
            c.beat = d.0;
            c.member_timeout = d.0 * 5;
        }
        if let Some(d) = m.lease {
            c.lease_time = d.0;
        }
        if let Some(d) = m.max_clock_skew {
            c.max_clock_skew = d.0;
        }
        if let Some(p) = m.max_drift_ppm {
            c.max_drift_ppm = p;
        }
        c.algorithm = self.algorithm;
        c.cluster_size = self.sim_nodes().len();
        c.bug_knobs = m.bug.map(BugKnobs::planted).unwrap_or_default();
        c.state_loss_tolerance = m.state_loss_tolerance;
        c
    }

    /// Node `i`'s configuration: [`Scenario::membership_cfg`] with its `[[node]]` overrides
    /// (config skew), before the per-node identity fields.
    pub fn node_cfg(&self, i: usize) -> leasehold::MembershipCfg {
        let mut c = self.membership_cfg();
        let Some(n) = self.node.get(i) else { return c };
        if let Some(k) = n.cluster_size {
            c.cluster_size = k;
        }
        if let Some(d) = n.lease {
            c.lease_time = d.0;
        }
        if let Some(d) = n.beat {
            c.beat = d.0;
            c.member_timeout = d.0 * 5;
        }
        if let Some(p) = n.max_drift_ppm {
            c.max_drift_ppm = p;
        }
        c
    }

    /// How soon after the last fault a lease must be held.
    pub fn leader_within(&self) -> Duration {
        let c = self.membership_cfg();
        self.expect
            .leader_within
            .map(|d| d.0)
            .unwrap_or(c.lease_time + c.max_clock_skew + c.beat * 5)
    }

    /// The failover bound (`expect.max_gap`): how long a calm cluster may be without a
    /// holder once it had `leader_within` to elect one. Default: a holder that dies just
    /// after renewing leaves promises that last `lease / (1 − ε)` in true time on the slowest
    /// granter's clock (ε = `max_drift_ppm`); the best-ranked survivor notices within a beat
    /// of its own promise running out, a campaign refused by a granter whose promise has not
    /// yet run out retries within three beats (resend, or give up and jitter), and each of
    /// the last renewal, the request and the grant crosses the slowest route once; `max_clock_skew`
    /// and one more beat are slack (and `allcall`'s wall-clock margin); a leader whose link is
    /// slow (`lag`) or whose client is congested (`congest`) may have its last renewal reach
    /// the granters that much later, and they promise it from then:
    /// `lease / (1 − ε) + max_clock_skew + 5 × beat + 3 × (slowest one-way latency) + most
    /// lag + most congestion delay`, the latency being `network.latency`'s upper end or the
    /// slowest `dc_link`'s, the last two the most any scripted step or random class of the
    /// file applies.
    pub fn max_gap(&self) -> Duration {
        if let Some(d) = self.expect.max_gap {
            return d.0;
        }
        let c = self.membership_cfg();
        let ppm = u128::from(c.max_drift_ppm.min(999_999));
        let lease = c.lease_time.as_nanos() * 1_000_000;
        let promise = lease.div_ceil(1_000_000 - ppm);
        let slowest = self
            .network
            .dc_link
            .iter()
            .map(|l| l.latency.hi)
            .chain([self.network.latency.hi])
            .max()
            .unwrap_or_default();
        let (mut lag, mut congest) = (Duration::ZERO, Duration::ZERO);
        for a in &self.at {
            match &a.step {
                Step::Lag(l) => lag = lag.max(l.latency.0),
                Step::Congest(c) => congest = congest.max(c.delay.0),
                _ => {}
            }
        }
        if let Some(l) = &self.faults.lag {
            lag = lag.max(l.latency.hi);
        }
        if let Some(c) = &self.faults.congest {
            congest = congest.max(c.delay.hi);
        }
        // Saturating: a file's durations may be anything humantime reads.
        [
            c.max_clock_skew,
            c.beat.saturating_mul(5),
            slowest.saturating_mul(3),
            lag,
            congest,
        ]
        .into_iter()
        .fold(
            Duration::from_nanos(u64::try_from(promise).unwrap_or(u64::MAX)),
            Duration::saturating_add,
        )
    }

    /// The same scenario run for `d` (the timeline and the quiet tail stay as written); an
    /// error if a scripted step would fall after the end or the faults would have no room.
    pub fn with_duration(&mut self, d: Duration) -> Result<(), String> {
        let mut s = self.clone();
        s.duration = Dur(d);
        let text = s.to_toml()?;
        *self = Scenario::parse("--duration", &text).map_err(|e| e.message)?;
        Ok(())
    }

    /// When random faults stop (true time from the start).
    pub fn faults_end(&self) -> Duration {
        let quiet = self.faults.quiet.map(|d| d.0).unwrap_or(self.leader_within() * 2);
        self.duration.0.saturating_sub(quiet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ScenarioError {
        Scenario::parse("bad.toml", text).unwrap_err()
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let e = err("nodes = 3\n\n[network]\nlatncy = \"1ms\"\n");
        assert_eq!(
            (e.file.as_str(), e.line, e.key.as_deref()),
            ("bad.toml", Some(4), Some("latncy"))
        );
        assert!(
            e.to_string().starts_with("bad.toml:4: key `latncy`: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn a_message_fault_needs_the_tick_grid_a_known_kind_and_a_route() {
        let step =
            "nodes = 3\n[[at]]\ntime = \"1s\"\ndrop_message = { from = \"n0\", to = \"n1\", kind = \"reply\" }\n";
        let e = err(step);
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("drop_message")), "{e}");
        assert!(e.message.contains("[network] tick"), "{e}");
        let on_grid = step.replace("nodes = 3\n", "nodes = 3\n[network]\ntick = \"100ms\"\n");
        let s = Scenario::parse("ok.toml", &on_grid).expect("on the grid");
        assert_eq!(s.to_toml().ok().map(|t| t.contains("drop_message")), Some(true));
        let e = err(&on_grid.replace("reply", "gossip"));
        assert!(e.message.contains("unknown variant `gossip`"), "{e}");
        let e = err(&on_grid.replace("\"n1\"", "\"n0\""));
        assert!(e.message.contains("to itself"), "{e}");
        let e = err("[network]\ntick = \"1ms\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("tick")), "{e}");
    }

    #[test]
    fn a_bad_duration_names_its_key_even_in_an_inline_table() {
        let e = err("nodes = 3\n[faults]\npartition = { every = \"soon\", heal_after = \"1s\" }\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("every")));
        assert!(e.message.contains("bad duration"), "{e}");
        let e = err("duration = \"5 parsecs\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("duration")));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert_eq!(err("[network]\nloss = 1.5\n").key.as_deref(), Some("loss"));
        assert_eq!(
            err("[network]\nlatency = \"9ms..1ms\"\n").key.as_deref(),
            Some("latency")
        );
        assert_eq!(err("algorithm = \"raft\"\n").key.as_deref(), Some("algorithm"));
        assert_eq!(err("nodes = 0\n").key.as_deref(), Some("nodes"));
        assert_eq!(
            err("[membership]\nbeat = \"1s\"\nlease = \"2s\"\n").key.as_deref(),
            Some("lease")
        );
        assert_eq!(
            err("algorithm = \"allcall\"\n[membership]\nbug = \"ignore_drift\"\n")
                .key
                .as_deref(),
            Some("bug")
        );
    }

    #[test]
    fn impossible_values_are_rejected_on_the_keys_own_line() {
        let e = err("# leader_within is how soon\nnodes = 3\n[expect]\nleader_within = \"0s\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("expect.leader_within")),
            "{e}"
        );
        let text = "duration = \"10s\"\n[faults]\n# quiet = \"1s\" would do\npause = { every = \"1s\", pause_for = \"1s\" }\nquiet = \"10s\"\n";
        let e = err(text);
        assert_eq!((e.line, e.key.as_deref()), (Some(5), Some("faults.quiet")), "{e}");
        assert!(
            e.message.contains("pause") && e.message.contains("none would happen"),
            "{e}"
        );
        // The default quiet time (twice leader_within, 23 s here) leaves no room either.
        let e = err("duration = \"20s\"\n[faults]\npause = { every = \"1s\", pause_for = \"1s\" }\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("duration")), "{e}");
        // Without random faults, a long quiet time harms nothing.
        assert!(Scenario::parse("ok.toml", "duration = \"5s\"\n[faults]\nquiet = \"9s\"\n").is_ok());
        let e = err("name = \"nodes = 3 is what I want\"\nnodes = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("nodes")), "{e}");
    }

    #[test]
    fn impossible_timelines_are_rejected_with_their_line() {
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nrestart = \"n1\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("restart")));
        assert!(e.message.contains("not down"), "{e}");
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nkill = \"n9\"\n");
        assert!(e.message.contains("unknown node"), "{e}");
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nheal = true\n[[at]]\ntime = \"4s\"\nheal = true\n");
        assert!(e.message.contains("time order"), "{e}");
        let e = err("nodes = 3\nduration = \"10s\"\n[[at]]\ntime = \"11s\"\nheal = true\n");
        assert!(e.message.contains("after the end"), "{e}");
        let e = err("nodes = 3\n[[at]]\ntime = \"1s\"\nheal = true\nkill = \"n0\"\n");
        assert!(e.message.contains("exactly one action"), "{e}");
    }

    #[test]
    fn preemptions_parse_both_ways_and_must_last() {
        let text = "nodes = 3\n[faults]\npreempt = { every = \"1s\", max = \"300ms\" }\n[[at]]\ntime = \"5s\"\npreempt = { node = \"n1\", by = \"25ms\" }\n";
        let s = Scenario::parse("p.toml", text).unwrap();
        assert_eq!(s.faults.classes(), vec!["preempt"]);
        let step = Step::Preempt(PreemptAt {
            node: "n1".into(),
            by: Dur(Duration::from_millis(25)),
        });
        assert_eq!(s.at[0].step, step);
        let again = Scenario::parse("again.toml", &s.to_toml().unwrap()).unwrap();
        assert_eq!(again.at, s.at);
        assert_eq!(again.faults.preempt.unwrap().max.0, Duration::from_millis(300));
        let index = |id: &str| s.sim_nodes().iter().position(|n| n.id == id).unwrap();
        let action = crate::faults::Action::from_step(&step, index);
        assert_eq!(action, crate::faults::Action::Preempt(1, Duration::from_millis(25)));
        assert_eq!(action.to_step(|i| format!("n{i}")), Some(step));
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\npreempt = { node = \"n1\", by = \"0s\" }\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("preempt")), "{e}");
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\npreempt = { node = \"n7\", by = \"1ms\" }\n");
        assert!(e.message.contains("unknown node"), "{e}");
        let e = err("[faults]\npreempt = { every = \"1s\", max = \"0s\" }\n");
        assert_eq!(e.key.as_deref(), Some("preempt"), "{e}");
    }

    #[test]
    fn slow_links_parse_both_ways_end_after_their_for_and_must_slow_something() {
        let text = "nodes = 3\n[[at]]\ntime = \"5s\"\nlag = { node = \"n1\", latency = \"300ms\", for = \"2s\" }\n[[at]]\ntime = \"9s\"\nlag = { node = \"n2\", latency = \"50ms\" }\n[[at]]\ntime = \"10s\"\nunlag = \"n2\"\n";
        let s = Scenario::parse("l.toml", text).unwrap();
        let again = Scenario::parse("again.toml", &s.to_toml().unwrap()).unwrap();
        assert_eq!(again.at, s.at);
        let index = |id: &str| s.sim_nodes().iter().position(|n| n.id == id).unwrap();
        let ms = Duration::from_millis;
        let actions: Vec<_> =
            s.at.iter()
                .map(|a| crate::faults::Action::from_step(&a.step, index))
                .collect();
        use crate::faults::Action::Lag;
        assert_eq!(actions, vec![Lag(1, Some(ms(300))), Lag(2, Some(ms(50))), Lag(2, None)]);
        // The scripted schedule ends the first at 7 s, a step of its own.
        let sched = crate::nemesis::plan(&s, 0).events;
        let ends: Vec<_> = sched
            .iter()
            .filter(|e| e.action == Lag(1, None))
            .map(|e| e.at)
            .collect();
        assert_eq!(ends, vec![ms(7000)]);
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nlag = { node = \"n1\", latency = \"0s\" }\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("lag")), "{e}");
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nlag = { node = \"n1\", latency = \"1ms\", for = \"0s\" }\n");
        assert_eq!(e.key.as_deref(), Some("lag"), "{e}");
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nunlag = \"n7\"\n");
        assert!(e.message.contains("unknown node"), "{e}");
        // Within what the simulator models: 1 s each way, off the tick grid, no router.
        let e = err("nodes = 3\n[[at]]\ntime = \"5s\"\nlag = { node = \"n1\", latency = \"1001ms\" }\n");
        assert!(e.message.contains("close real NATS routes"), "{e}");
        let e = err("nodes = 3\n[network]\ntick = \"100ms\"\n[[at]]\ntime = \"5s\"\nlag = { node = \"n1\", latency = \"1ms\" }\n");
        assert!(e.message.contains("tick grid"), "{e}");
        let e = err("nodes = 3\n[router]\nclients = 2\n[faults]\nlag = { every = \"3s\", latency = \"1ms..2ms\", for = \"2s..5s\" }\n");
        assert_eq!(e.key.as_deref(), Some("lag"), "{e}");
        assert!(e.message.contains("router clients"), "{e}");
    }

    #[test]
    fn random_slow_links_come_in_pairs_within_their_ranges_and_must_be_positive() {
        let text = "nodes = 3\nduration = \"60s\"\n[faults]\nlag = { every = \"3s\", latency = \"100ms..400ms\", for = \"2s..5s\" }\n";
        let s = Scenario::parse("l.toml", text).unwrap();
        assert_eq!(s.faults.classes(), vec!["lag"]);
        let events = crate::nemesis::plan(&s, 4).events;
        let mut lagging: Option<(usize, Duration)> = None;
        let mut episodes = 0;
        for e in &events {
            match (e.action.clone(), lagging) {
                (crate::faults::Action::Lag(i, Some(l)), None) => {
                    assert!(i < 3 && (100..=400).contains(&l.as_millis()), "{l:?}");
                    lagging = Some((i, e.at));
                    episodes += 1;
                }
                (crate::faults::Action::Lag(i, None), Some((k, from))) => {
                    assert_eq!(i, k, "the episode's own node is ended");
                    assert!(
                        (2000..=5000).contains(&(e.at - from).as_millis()),
                        "lasted {:?}",
                        e.at - from
                    );
                    lagging = None;
                }
                (a, _) => panic!("{a:?} out of turn at {:?}", e.at),
            }
        }
        assert!(episodes >= 3 && lagging.is_none(), "{episodes} episodes, all ended");
        let e = err("[faults]\nlag = { every = \"3s\", latency = \"0s..1s\", for = \"2s..5s\" }\n");
        assert_eq!(e.key.as_deref(), Some("lag"), "{e}");
    }

    #[test]
    fn defaults_resolve() {
        let s = Scenario::parse("dir/my-scenario.toml", "").unwrap();
        assert_eq!(s.name, "my-scenario");
        assert_eq!(s.sim_nodes().len(), 3);
        assert_eq!(s.leader_within(), Duration::from_millis(11_500));
        assert_eq!(s.faults_end(), Duration::from_secs(60) - Duration::from_millis(23_000));
        // lease / (1 - 1000 ppm) + skew 1 s + 5 beats + 3 x 10 ms.
        assert_eq!(
            s.max_gap(),
            Duration::from_nanos(10_010_010_011) + Duration::from_millis(1_530)
        );
    }

    #[test]
    fn max_gap_is_set_checked_and_grows_with_the_slowest_route() {
        let s = Scenario::parse("s.toml", "[expect]\nmax_gap = \"4s\"\n").unwrap();
        assert_eq!(s.max_gap(), Duration::from_secs(4));
        let e = err("nodes = 3\n# max_gap is how long\n[expect]\nmax_gap = \"0s\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("expect.max_gap")), "{e}");
        let e = err("[expect]\nmax_gap = \"soon\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("max_gap")), "{e}");
        let text = "[membership]\nlease = \"1s\"\nmax_drift_ppm = 0\nmax_clock_skew = \"500ms\"\n\
                    [network]\nlatency = \"1ms..2ms\"\n[[network.dc_link]]\nbetween = [\"a\", \"b\"]\n\
                    latency = \"300ms\"\n[[node]]\ndatacenter = \"a\"\n[[node]]\ndatacenter = \"b\"\n\
                    [[node]]\ndatacenter = \"b\"\n";
        let s = Scenario::parse("s.toml", text).unwrap();
        assert_eq!(s.max_gap(), Duration::from_millis(1_000 + 500 + 500 + 900));
    }

    #[test]
    fn max_gap_grows_with_the_most_lag_and_congestion_the_file_applies() {
        let base = "[membership]\nlease = \"1s\"\nmax_drift_ppm = 0\nmax_clock_skew = \"500ms\"\n\
                    [network]\nlatency = \"0ms\"\n";
        let plain = Scenario::parse("s.toml", base).unwrap().max_gap();
        assert_eq!(plain, Duration::from_millis(1_000 + 500 + 500));
        let with = |more: &str| Scenario::parse("s.toml", &format!("{base}{more}")).unwrap().max_gap() - plain;
        // Scripted: the largest of each kind, the two added (a leader both slow and congested).
        let scripted = "[[at]]\ntime = \"5s\"\nlag = { node = \"n1\", latency = \"300ms\", for = \"2s\" }\n\
                        [[at]]\ntime = \"9s\"\nlag = { node = \"n2\", latency = \"100ms\", for = \"2s\" }\n\
                        [[at]]\ntime = \"12s\"\ncongest = { node = \"n1\", delay = \"200ms\", for = \"2s\" }\n";
        assert_eq!(with(scripted), Duration::from_millis(300 + 200));
        // Random classes: their ranges' upper ends.
        let classes = "[faults]\nlag = { every = \"10s\", latency = \"100ms..400ms\", for = \"2s\" }\n\
                       congest = { every = \"10s\", delay = \"50ms..250ms\", for = \"2s\" }\n";
        assert_eq!(with(classes), Duration::from_millis(400 + 250));
        // Set by the file: as written.
        assert_eq!(with("[expect]\nmax_gap = \"4s\"\n") + plain, Duration::from_secs(4));
    }
}
