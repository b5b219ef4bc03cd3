//! The shape of the simulated network: which directed routes are cut, each node's
//! datacenter, and the loss and latency of every route (per datacenter pair where the
//! scenario says so). The fabric asks it, per copy of a message, what happens on the route.
//!
//! Cuts are between hosts: a router client lives on the host of a node ([`Topology::set_host`])
//! and shares its routes, so a partition puts it on its host's side.

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
    /// The host each index runs on (itself, except router clients).
    host: Vec<usize>,
    dc_of: Vec<usize>,
    dc_latency: BTreeMap<(usize, usize), DurRange>,
    loss: f64,
    latency: DurRange,
    /// Extra latency (ns) of every route to and from each host: a slow link.
    lag: Vec<u128>,
}

impl Topology {
    /// `n` nodes in one datacenter, every route up, with this loss and latency.
    pub fn new(n: usize, latency: DurRange, loss: f64) -> Self {
        Topology {
            cut: vec![vec![false; n]; n],
            host: (0..n).collect(),
            dc_of: vec![0; n],
            dc_latency: BTreeMap::new(),
            loss,
            latency,
            lag: vec![0; n],
        }
    }

    /// What the route from `from` to `to` (different nodes) does with one copy. Draws from
    /// `rng` in a fixed order: loss (if any), then latency (if a range).
    pub fn hop(&self, from: usize, to: usize, rng: &mut ChaCha8Rng) -> Hop {
        if self.is_cut(from, to) {
            return Hop::Cut;
        }
        if self.loss > 0.0 && rng.gen_bool(self.loss.min(1.0)) {
            return Hop::Lost;
        }
        Hop::After(self.latency(from, to, rng))
    }

    /// A latency of the route from `from` to `to`, in ns, drawn from `rng` if it is a range.
    pub fn latency(&self, from: usize, to: usize, rng: &mut ChaCha8Rng) -> u128 {
        let range = self
            .dc_latency
            .get(&(self.dc_of[from], self.dc_of[to]))
            .copied()
            .unwrap_or(self.latency);
        let (lo, hi) = (range.lo.as_nanos(), range.hi.as_nanos());
        // A slow link is between hosts: a client and its own host's server share it.
        let (a, b) = (self.host[from], self.host[to]);
        let lag = if a == b {
            0
        } else {
            self.lag[a].saturating_add(self.lag[b])
        };
        lag.saturating_add(if hi > lo { rng.gen_range(lo..=hi) } else { lo })
    }

    /// Every route to and from node `i`'s host takes `latency` longer, each way (`None`: no
    /// longer): a slow link. The fabric keeps each route's order across the change.
    pub fn set_lag(&mut self, i: usize, latency: Option<std::time::Duration>) {
        let host = self.host[i];
        self.lag[host] = latency.map_or(0, |l| l.as_nanos());
    }

    /// Whether the route from `from` to `to` is cut (between their hosts).
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut[self.host[from]][self.host[to]]
    }

    /// The host index `i` runs on (itself, except router clients).
    pub fn host_of(&self, i: usize) -> usize {
        self.host[i]
    }

    /// Runs index `i` (a router client) on the host of node `host`: it shares that host's
    /// cuts, and is never cut from it.
    pub fn set_host(&mut self, i: usize, host: usize) {
        self.host[i] = host;
    }

    fn is_host(&self, i: usize) -> bool {
        self.host[i] == i
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

    /// Cuts every route between hosts of different groups; hosts in no group join the first.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let n = self.cut.len();
        let group_of = |x: usize| groups.iter().position(|grp| grp.contains(&x)).unwrap_or(0);
        for a in 0..n {
            for b in 0..n {
                self.cut[a][b] = self.is_host(a) && self.is_host(b) && group_of(a) != group_of(b);
            }
        }
    }

    /// The directed routes cut now (between hosts).
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_client_shares_its_hosts_side_of_a_partition() {
        let ms = std::time::Duration::from_millis(1);
        let mut t = Topology::new(4, DurRange { lo: ms, hi: ms }, 0.0);
        // 0 and 1 are nodes; 2 is a client on 1's host; 3 a stranger of its own.
        t.set_host(2, 1);
        t.partition(&[vec![0], vec![1]]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(t.hop(2, 0, &mut rng), Hop::Cut, "cut from the other side");
        assert_eq!(t.hop(0, 2, &mut rng), Hop::Cut);
        assert_ne!(t.hop(2, 1, &mut rng), Hop::Cut, "never from its host");
        assert_eq!(t.hop(3, 1, &mut rng), Hop::Cut, "a host in no group joins the first");
        assert_eq!(t.cuts(), [(0, 1), (1, 0), (1, 3), (3, 1)], "cuts are between hosts");
        t.set_cuts(&[(1, 0)]);
        assert_eq!(t.hop(2, 0, &mut rng), Hop::Cut, "a one-way cut of its host is its own");
        assert_ne!(t.hop(0, 2, &mut rng), Hop::Cut);
    }

    #[test]
    fn a_lagging_host_adds_its_lag_to_every_route_to_and_from_it_and_its_clients() {
        let ms = std::time::Duration::from_millis;
        let mut t = Topology::new(4, DurRange { lo: ms(1), hi: ms(1) }, 0.0);
        t.set_host(2, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let lat = |t: &Topology, a, b, rng: &mut ChaCha8Rng| t.latency(a, b, rng) / 1_000_000;
        t.set_lag(1, Some(ms(300)));
        assert_eq!(lat(&t, 0, 1, &mut rng), 301, "to it");
        assert_eq!(lat(&t, 1, 0, &mut rng), 301, "from it");
        assert_eq!(lat(&t, 2, 0, &mut rng), 301, "its host's client lags with it");
        assert_eq!(lat(&t, 2, 1, &mut rng), 1, "but not on the way to its own host");
        assert_eq!(lat(&t, 0, 3, &mut rng), 1, "other routes as they were");
        t.set_lag(3, Some(ms(50)));
        assert_eq!(lat(&t, 1, 3, &mut rng), 351, "two slow ends add up");
        t.set_lag(1, None);
        assert_eq!(lat(&t, 0, 1, &mut rng), 1, "fast again");
    }
}
