//! The shape of the simulated network: which directed routes are cut, each node's
//! datacenter, and the loss and latency of every route (per datacenter pair where the
//! scenario says so). The fabric asks it, per copy of a message, what happens on the route.

use crate::scenario::DurRange;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// What a route does with one copy of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// The route is cut.
    Cut,
    /// Lost at random.
    Lost,
    /// Delivered after this many ns.
    After(u128),
}

/// Routes between `n` nodes.
#[derive(Debug, Clone)]
pub struct Topology {
    cut: Vec<Vec<bool>>,
    dc_of: Vec<usize>,
    dc_latency: BTreeMap<(usize, usize), DurRange>,
    loss: f64,
    latency: DurRange,
}

impl Topology {
    /// `n` nodes in one datacenter, every route up, with this loss and latency.
    pub fn new(n: usize, latency: DurRange, loss: f64) -> Self {
        Topology {
            cut: vec![vec![false; n]; n],
            dc_of: vec![0; n],
            dc_latency: BTreeMap::new(),
            loss,
            latency,
        }
    }

    /// What the route from `from` to `to` (different nodes) does with one copy. Draws from
    /// `rng` in a fixed order: loss (if any), then latency (if a range).
    pub fn hop(&self, from: usize, to: usize, rng: &mut ChaCha8Rng) -> Hop {
        if self.cut[from][to] {
            return Hop::Cut;
        }
        if self.loss > 0.0 && rng.gen_bool(self.loss.min(1.0)) {
            return Hop::Lost;
        }
        let range = self
            .dc_latency
            .get(&(self.dc_of[from], self.dc_of[to]))
            .copied()
            .unwrap_or(self.latency);
        let (lo, hi) = (range.lo.as_nanos(), range.hi.as_nanos());
        Hop::After(if hi > lo { rng.gen_range(lo..=hi) } else { lo })
    }

    /// Places node `i` in datacenter `dc` (an index).
    pub fn set_datacenter(&mut self, i: usize, dc: usize) {
        self.dc_of[i] = dc;
    }

    /// Routes between datacenters `a` and `b` (both ways) take `latency` instead of the default.
    pub fn set_dc_latency(&mut self, a: usize, b: usize, latency: DurRange) {
        self.dc_latency.insert((a, b), latency);
        self.dc_latency.insert((b, a), latency);
    }

    /// Cuts (or restores) the route from `a` to `b` (one direction).
    pub fn set_cut(&mut self, a: usize, b: usize, cut: bool) {
        self.cut[a][b] = cut;
    }

    /// Cuts every route between nodes of different groups; nodes in no group join the first.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let n = self.cut.len();
        let group_of = |x: usize| groups.iter().position(|grp| grp.contains(&x)).unwrap_or(0);
        for a in 0..n {
            for b in 0..n {
                self.cut[a][b] = group_of(a) != group_of(b);
            }
        }
    }

    /// The directed routes cut now.
    pub fn cuts(&self) -> Vec<(usize, usize)> {
        let n = self.cut.len();
        (0..n)
            .flat_map(|a| (0..n).map(move |b| (a, b)))
            .filter(|(a, b)| self.cut[*a][*b])
            .collect()
    }

    /// Cuts exactly `links` (directed), restoring every other route.
    pub fn set_cuts(&mut self, links: &[(usize, usize)]) {
        self.heal();
        for (a, b) in links {
            self.cut[*a][*b] = true;
        }
    }

    /// Restores every route.
    pub fn heal(&mut self) {
        for row in self.cut.iter_mut() {
            row.iter_mut().for_each(|c| *c = false);
        }
    }

    /// Sets the loss probability of every route.
    pub fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    /// Sets the latency range of every route.
    pub fn set_latency(&mut self, latency: DurRange) {
        self.latency = latency;
    }
}
