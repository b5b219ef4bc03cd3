//! `Router`: routes to datacenters over network areas (Consul's `servers.Router`).

use super::coords::{Coordinate, CoordinateBook};
use super::manager::{ClusterInfo, Manager};
use super::{Pinger, Server};
use crate::config::BugKnobs;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Names a network area (a set of servers that see each other, e.g. the LAN or the WAN).
pub type AreaId = String;

/// Why a router call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The router was shut down; no area can be added.
    #[error("router is shut down")]
    ShutDown,
    /// No area of that name.
    #[error("no area {0:?}")]
    NoArea(AreaId),
    /// The area already exists.
    #[error("area {0:?} already exists")]
    AreaExists(AreaId),
}

/// A route to a datacenter.
#[derive(Debug, Clone)]
pub struct Route {
    /// The manager to report failures to ([`Manager::notify_failed_server`]).
    pub manager: Arc<Manager>,
    /// The server to try.
    pub server: Server,
    /// `false` when every manager for the datacenter is offline and this is a best effort.
    pub healthy: bool,
}

/// Raw coordinates of one datacenter's servers as seen in one area.
#[derive(Debug, Clone)]
pub struct DatacenterMap {
    /// The datacenter.
    pub datacenter: String,
    /// The area.
    pub area: AreaId,
    /// Each server's coordinate.
    pub coordinates: Vec<(String, Coordinate)>,
}

struct Area {
    cluster: Arc<dyn ClusterInfo>,
    pinger: Arc<dyn Pinger>,
    coords: Arc<Mutex<CoordinateBook>>,
    managers: BTreeMap<String, Arc<Manager>>,
}

#[derive(Default)]
struct State {
    areas: BTreeMap<AreaId, Area>,
    shut_down: bool,
    seeds: u64,
}

/// Keeps a manager per (area, datacenter) and answers which server to use for a datacenter.
///
/// ```
/// use leasehold::router::{ClusterInfo, CoordinateBook, Pinger, Router, Server};
/// use std::sync::{Arc, Mutex};
///
/// struct AlwaysUp;
/// impl Pinger for AlwaysUp {
///     fn ping(&self, _: &Server) -> leasehold::BoxFuture<'_, bool> {
///         Box::pin(async { true })
///     }
/// }
/// let router = Router::new("dc1", 7);
/// let cluster: Arc<dyn ClusterInfo> = Arc::new(|| 10usize);
/// let book = Arc::new(Mutex::new(CoordinateBook::new(7)));
/// router.add_area("lan", cluster.clone(), Arc::new(AlwaysUp), book.clone()).unwrap();
/// router.add_area("wan", cluster, Arc::new(AlwaysUp), book).unwrap();
/// router.add_server("lan", Server::new("s1", "dc1", "rpc.")).unwrap();
/// router.add_server("wan", Server::new("s9", "dc2", "rpc.")).unwrap();
/// assert_eq!(router.find_route("dc2").unwrap().server.name, "s9");
/// ```
pub struct Router {
    local_dc: String,
    seed: u64,
    min_reuse: Option<Duration>,
    bugs: BugKnobs,
    state: Mutex<State>,
}

impl Router {
    /// A router for a node in `local_dc`; `seed` drives its managers' shuffles.
    pub fn new(local_dc: impl Into<String>, seed: u64) -> Self {
        Router {
            local_dc: local_dc.into(),
            seed,
            min_reuse: None,
            bugs: BugKnobs::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// The same router with planted bugs (test only), handed to every manager it makes
    /// ([`Manager::with_bugs`]).
    pub fn with_bugs(mut self, bugs: BugKnobs) -> Self {
        self.bugs = bugs;
        self
    }

    /// The same router with managers that rebalance after `min_reuse` (simulations shorten it).
    pub fn with_min_reuse(mut self, min_reuse: Duration) -> Self {
        self.min_reuse = Some(min_reuse);
        self
    }

    /// This node's datacenter.
    pub fn local_datacenter(&self) -> &str {
        &self.local_dc
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a network area; `coords` is the book its pinger updates.
    pub fn add_area(
        &self,
        id: impl Into<AreaId>,
        cluster: Arc<dyn ClusterInfo>,
        pinger: Arc<dyn Pinger>,
        coords: Arc<Mutex<CoordinateBook>>,
    ) -> Result<(), RouterError> {
        let id = id.into();
        let mut g = self.lock();
        if g.shut_down {
            return Err(RouterError::ShutDown);
        }
        if g.areas.contains_key(&id) {
            return Err(RouterError::AreaExists(id));
        }
        g.areas.insert(
            id,
            Area {
                cluster,
                pinger,
                coords,
                managers: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// Removes an area and its managers.
    pub fn remove_area(&self, id: &str) -> Result<(), RouterError> {
        self.lock()
            .areas
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| RouterError::NoArea(id.to_string()))
    }

    /// A server joined `area`.
    pub fn add_server(&self, area: &str, s: Server) -> Result<(), RouterError> {
        let mut g = self.lock();
        g.seeds += 1;
        let seed = self.seed ^ g.seeds.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let a = g
            .areas
            .get_mut(area)
            .ok_or_else(|| RouterError::NoArea(area.to_string()))?;
        let (pinger, cluster, min_reuse) = (a.pinger.clone(), a.cluster.clone(), self.min_reuse);
        let m = a.managers.entry(s.datacenter.clone()).or_insert_with(|| {
            let m = Manager::new(pinger, cluster, seed).with_bugs(self.bugs);
            Arc::new(match min_reuse {
                Some(d) => m.with_min_reuse(d),
                None => m,
            })
        });
        m.add_server(s);
        Ok(())
    }

    /// A server left `area`; a datacenter with no servers left is forgotten.
    pub fn remove_server(&self, area: &str, s: &Server) -> Result<(), RouterError> {
        let mut g = self.lock();
        let a = g
            .areas
            .get_mut(area)
            .ok_or_else(|| RouterError::NoArea(area.to_string()))?;
        if let Some(m) = a.managers.get(&s.datacenter) {
            m.remove_server(s);
            if m.num_servers() == 0 {
                a.managers.remove(&s.datacenter);
            }
        }
        Ok(())
    }

    /// A server failed in `area` (membership lost it): traffic shifts away at once, but it
    /// stays listed and the order of the list stays ([`Manager::fail_server`]).
    pub fn fail_server(&self, area: &str, s: &Server) -> Result<(), RouterError> {
        let g = self.lock();
        let a = g.areas.get(area).ok_or_else(|| RouterError::NoArea(area.to_string()))?;
        if let Some(m) = a.managers.get(&s.datacenter) {
            m.fail_server(s);
        }
        Ok(())
    }

    /// The servers `area` knows in `dc`, front first.
    pub fn area_servers(&self, area: &str, dc: &str) -> Vec<Server> {
        self.lock()
            .areas
            .get(area)
            .and_then(|a| a.managers.get(dc))
            .map(|m| m.servers())
            .unwrap_or_default()
    }

    /// The managers for `dc`, one per area that reaches it.
    pub fn managers(&self, dc: &str) -> Vec<Arc<Manager>> {
        self.lock()
            .areas
            .values()
            .filter_map(|a| a.managers.get(dc).cloned())
            .collect()
    }

    /// A server to use for `dc`: from the first area whose manager is not offline; failing
    /// that, a best-effort one (`healthy == false`); `None` if no area knows a server there.
    pub fn find_route(&self, dc: &str) -> Option<Route> {
        let managers = self.managers(dc);
        for m in &managers {
            if !m.is_offline() {
                if let Some(server) = m.find_server() {
                    return Some(Route {
                        manager: m.clone(),
                        server,
                        healthy: true,
                    });
                }
            }
        }
        managers.into_iter().find_map(|m| {
            m.find_server().map(|server| Route {
                manager: m,
                server,
                healthy: false,
            })
        })
    }

    /// Every datacenter known, sorted by name.
    pub fn datacenters(&self) -> Vec<String> {
        let g = self.lock();
        let mut dcs: Vec<String> = g.areas.values().flat_map(|a| a.managers.keys().cloned()).collect();
        dcs.sort();
        dcs.dedup();
        dcs
    }

    /// Datacenters sorted by the median estimated round trip from this node to their servers
    /// (the lowest over the areas that reach them), ties and unknown distances by name; the
    /// local datacenter counts as distance zero.
    pub fn datacenters_by_distance(&self) -> Vec<String> {
        let g = self.lock();
        let mut best: BTreeMap<String, f64> = BTreeMap::new();
        for a in g.areas.values() {
            let book = a.coords.lock().unwrap_or_else(|e| e.into_inner());
            for (dc, m) in &a.managers {
                let mut rtts: Vec<f64> = m
                    .servers()
                    .iter()
                    .filter_map(|s| book.estimated_rtt(&s.name))
                    .map(|d| d.as_secs_f64())
                    .collect();
                let d = if *dc == self.local_dc {
                    0.0
                } else if rtts.is_empty() {
                    f64::INFINITY
                } else {
                    rtts.sort_by(f64::total_cmp);
                    rtts[rtts.len() / 2]
                };
                let e = best.entry(dc.clone()).or_insert(f64::INFINITY);
                *e = e.min(d);
            }
        }
        let mut v: Vec<(String, f64)> = best.into_iter().collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        v.into_iter().map(|(dc, _)| dc).collect()
    }

    /// Raw coordinates per datacenter and area.
    pub fn datacenter_maps(&self) -> Vec<DatacenterMap> {
        let g = self.lock();
        let mut out = Vec::new();
        for (id, a) in &g.areas {
            let book = a.coords.lock().unwrap_or_else(|e| e.into_inner());
            for (dc, m) in &a.managers {
                let coordinates = m
                    .servers()
                    .iter()
                    .filter_map(|s| book.get(&s.name).map(|c| (s.name.clone(), c.clone())))
                    .collect();
                out.push(DatacenterMap {
                    datacenter: dc.clone(),
                    area: id.clone(),
                    coordinates,
                });
            }
        }
        out
    }

    /// Removes every area; no area can be added afterwards.
    pub fn shutdown(&self) {
        let mut g = self.lock();
        g.shut_down = true;
        g.areas.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    struct Fixed(Vec<&'static str>);
    impl Pinger for Fixed {
        fn ping(&self, s: &Server) -> crate::BoxFuture<'_, bool> {
            let ok = self.0.contains(&s.name.as_str());
            Box::pin(async move { ok })
        }
    }

    fn router(up: Vec<&'static str>) -> (Router, Arc<Mutex<CoordinateBook>>) {
        let r = Router::new("dc1", 1);
        let book = Arc::new(Mutex::new(CoordinateBook::new(1)));
        r.add_area("lan", Arc::new(|| 10usize), Arc::new(Fixed(up)), book.clone())
            .unwrap();
        (r, book)
    }

    fn s(n: &str, dc: &str) -> Server {
        Server::new(n, dc, "p.")
    }

    #[test]
    fn areas_and_datacenters() {
        let (r, _) = router(vec![]);
        assert_eq!(
            r.add_area(
                "lan",
                Arc::new(|| 1usize),
                Arc::new(Fixed(vec![])),
                Arc::new(Mutex::new(CoordinateBook::new(2)))
            ),
            Err(RouterError::AreaExists("lan".into()))
        );
        assert_eq!(
            r.add_server("wan", s("a", "dc1")),
            Err(RouterError::NoArea("wan".into()))
        );
        r.add_server("lan", s("b", "dc2")).unwrap();
        r.add_server("lan", s("a", "dc1")).unwrap();
        assert_eq!(r.datacenters(), ["dc1", "dc2"]);
        r.remove_server("lan", &s("b", "dc2")).unwrap();
        assert_eq!(r.datacenters(), ["dc1"], "an emptied datacenter is forgotten");
        r.remove_area("lan").unwrap();
        assert!(r.datacenters().is_empty());
        assert_eq!(r.remove_area("lan"), Err(RouterError::NoArea("lan".into())));
    }

    #[test]
    fn find_route_prefers_healthy_and_falls_back_to_best_effort() {
        let (r, _) = router(vec!["b"]);
        assert!(r.find_route("dc1").is_none());
        r.add_server("lan", s("a", "dc1")).unwrap();
        r.add_server("lan", s("b", "dc1")).unwrap();
        let route = r.find_route("dc1").unwrap();
        assert!(route.healthy);
        let m = route.manager.clone();
        block_on(m.rebalance_servers());
        assert_eq!(
            r.find_route("dc1").unwrap().server.name,
            "b",
            "rebalance found the answering server"
        );
        r.fail_server("lan", &s("b", "dc1")).unwrap();
        assert_eq!(
            r.find_route("dc1").unwrap().server.name,
            "a",
            "failing shifts traffic at once"
        );
        assert_eq!(m.num_servers(), 2, "but the failed server stays listed");

        let (r, _) = router(vec![]);
        r.add_server("lan", s("a", "dc1")).unwrap();
        block_on(r.managers("dc1")[0].rebalance_servers());
        let route = r.find_route("dc1").unwrap();
        assert!(!route.healthy, "every ping failed: best effort");
        assert_eq!(route.server.name, "a");
    }

    #[test]
    fn shutdown_then_add_is_refused() {
        let (r, _) = router(vec![]);
        r.add_server("lan", s("a", "dc1")).unwrap();
        r.shutdown();
        assert!(r.datacenters().is_empty());
        assert_eq!(
            r.add_area(
                "wan",
                Arc::new(|| 1usize),
                Arc::new(Fixed(vec![])),
                Arc::new(Mutex::new(CoordinateBook::new(3)))
            ),
            Err(RouterError::ShutDown)
        );
    }

    #[test]
    fn datacenters_by_distance_use_the_median_estimate_and_the_best_area() {
        let (r, book) = router(vec![]);
        for (n, dc) in [
            ("a1", "dc1"),
            ("b1", "dc2"),
            ("b2", "dc2"),
            ("b3", "dc2"),
            ("c1", "dc3"),
            ("d1", "dc4"),
        ] {
            r.add_server("lan", s(n, dc)).unwrap();
        }
        {
            // Coordinates placed so estimated RTTs are known: a point at distance x ms.
            let mut b = book.lock().unwrap();
            let at = |x: f64| Coordinate {
                vec: [x, 0.0],
                height: 0.0,
                error: 1.0,
            };
            *b = CoordinateBook::new(9);
            for (n, x) in [("b1", 10.0), ("b2", 80.0), ("b3", 90.0), ("c1", 50.0)] {
                b.record(n, at(x)).unwrap();
            }
            assert!(b.estimated_rtt("b1").is_some());
        }
        // dc2's median (80) is further than dc3 (50) though its nearest server is closer;
        // dc4 has no coordinate and sorts last; the local dc is first.
        assert_eq!(r.datacenters_by_distance(), ["dc1", "dc3", "dc2", "dc4"]);
        let maps = r.datacenter_maps();
        assert_eq!(
            maps.iter().find(|m| m.datacenter == "dc2").unwrap().coordinates.len(),
            3
        );
    }

    #[test]
    fn a_server_added_after_every_server_failed_makes_the_route_healthy_again() {
        let (r, _) = router(vec![]);
        r.add_server("lan", s("a", "dc1")).unwrap();
        r.add_server("lan", s("b", "dc1")).unwrap();
        block_on(r.managers("dc1")[0].rebalance_servers());
        assert!(!r.find_route("dc1").unwrap().healthy, "every ping failed");
        // The servers come back: membership adds them again.
        r.add_server("lan", s("a", "dc1")).unwrap();
        assert!(
            r.find_route("dc1").unwrap().healthy,
            "without waiting for the next rebalance"
        );
    }

    fn any_f64() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![proptest::num::f64::ANY, -1e6..1e6f64, Just(1e30), Just(1e200)]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Whatever coordinates and round trips reach the book (checked or, with the planted
        /// bug, not), no router call panics.
        #[test]
        fn no_coordinate_makes_a_router_call_panic(
            unchecked in proptest::bool::ANY,
            obs in proptest::collection::vec(
                (0usize..4, any_f64(), any_f64(), any_f64(), any_f64(), proptest::num::u64::ANY),
                1..30,
            ),
        ) {
            let (r, book) = router(vec![]);
            if unchecked {
                let mut b = book.lock().unwrap();
                *b = CoordinateBook::new(1).with_bugs(crate::config::BugKnobs::planted(crate::config::Bug::UncheckedCoordinates));
            }
            let names = ["a1", "b1", "b2", "c1"];
            for (n, dc) in [("a1", "dc1"), ("b1", "dc2"), ("b2", "dc2"), ("c1", "dc3")] {
                r.add_server("lan", s(n, dc)).unwrap();
            }
            for (who, x, y, height, error, ns) in obs {
                let c = Coordinate { vec: [x, y], height, error };
                let _ = book.lock().unwrap().observe(names[who], c, Duration::from_nanos(ns));
                let order = r.datacenters_by_distance();
                proptest::prop_assert_eq!(order.len(), 3);
                proptest::prop_assert_eq!(&order[0], "dc1");
                let _ = r.datacenter_maps();
                let _ = r.find_route("dc2");
            }
        }
    }
}
