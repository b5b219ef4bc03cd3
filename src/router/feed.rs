//! Membership feeds routing (the replacement of Serf event handling), and flood joins.

use super::router::Router;
use super::Server;
use crate::election::Notice;
use crate::handle::Notices;
use crate::wire::AgentLoc;

/// Applies membership notices to `area` of `router` until the notices end: a member added is
/// added (or merged), a member lost is failed (traffic shifts away, it stays listed).
/// `server_of` says which members are servers and where (`None`: not a server).
pub async fn feed(router: &Router, area: &str, mut notices: Notices, server_of: impl Fn(&AgentLoc) -> Option<Server>) {
    while let Some((_, n)) = notices.next().await {
        apply(router, area, &n, &server_of);
    }
}

/// Applies one notice (the synchronous core of [`feed`]).
pub fn apply(router: &Router, area: &str, n: &Notice, server_of: &impl Fn(&AgentLoc) -> Option<Server>) {
    match n {
        Notice::MemberAdded(loc) => {
            if let Some(s) = server_of(loc) {
                let _ = router.add_server(area, s);
            }
        }
        Notice::MemberLost(loc) => {
            if let Some(s) = server_of(loc) {
                let _ = router.fail_server(area, &s);
            }
        }
        _ => {}
    }
}

/// Makes sure every server of the local datacenter in the `local` area is also in the
/// `global` area, named `<name>.<dc>` as global areas name them (Consul's `FloodJoins`).
/// Returns how many were added.
pub fn flood_join(router: &Router, local: &str, global: &str) -> usize {
    let dc = router.local_datacenter().to_string();
    let known: Vec<String> = router.area_servers(global, &dc).into_iter().map(|s| s.name).collect();
    let mut added = 0;
    for s in router.area_servers(local, &dc) {
        let name = format!("{}.{}", s.name, s.datacenter);
        if !known.contains(&name) && router.add_server(global, Server { name, ..s }).is_ok() {
            added += 1;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{CoordinateBook, Pinger};
    use std::sync::{Arc, Mutex};

    struct Never;
    impl Pinger for Never {
        fn ping(&self, _: &Server) -> crate::BoxFuture<'_, bool> {
            Box::pin(async { false })
        }
    }

    fn router() -> Router {
        let r = Router::new("dc1", 5);
        for a in ["lan", "wan"] {
            r.add_area(
                a,
                Arc::new(|| 3usize),
                Arc::new(Never),
                Arc::new(Mutex::new(CoordinateBook::new(1))),
            )
            .unwrap();
        }
        r
    }

    fn server_of(l: &AgentLoc) -> Option<Server> {
        l.id.starts_with('s').then(|| Server::new(l.id.clone(), "dc1", "p."))
    }

    #[test]
    fn members_added_are_routed_to_and_members_lost_are_failed() {
        let r = router();
        for id in ["s1", "s2", "client9"] {
            apply(&r, "lan", &Notice::MemberAdded(AgentLoc::new(id, 0)), &server_of);
        }
        let names: Vec<String> = r.area_servers("lan", "dc1").into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["s1", "s2"], "clients are not servers");
        apply(&r, "lan", &Notice::MemberLost(AgentLoc::new("s1", 0)), &server_of);
        assert_eq!(
            r.find_route("dc1").unwrap().server.name,
            "s2",
            "the lost server is failed over"
        );
        assert_eq!(r.area_servers("lan", "dc1").len(), 2, "and still listed");
    }

    #[test]
    fn flood_join_puts_every_local_server_in_the_global_area_once() {
        let r = router();
        for id in ["s1", "s2"] {
            apply(&r, "lan", &Notice::MemberAdded(AgentLoc::new(id, 0)), &server_of);
        }
        assert_eq!(flood_join(&r, "lan", "wan"), 2);
        assert_eq!(flood_join(&r, "lan", "wan"), 0, "idempotent");
        let names: Vec<String> = r.area_servers("wan", "dc1").into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["s1.dc1", "s2.dc1"]);
    }
}
