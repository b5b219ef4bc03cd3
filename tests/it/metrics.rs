//! `leasehold-agent --metrics-addr`: a real agent on a real nats-server, scraped as
//! Prometheus would scrape it; `/healthz` follows the connection.

use crate::common::{free_port, Agent, Server};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// One HTTP GET of `path`: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// The value of the sample `name` (no labels) in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls until `f` holds, for up to `within`.
fn until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_real_agent_exports_its_leadership_and_its_health_follows_the_connection() {
    let mut server = Server::start(free_port(), None);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start_extra("n0", 0, &server.url(), 2, &["--metrics-addr".into(), addr]);
    let _peer = Agent::start("n1", 1, &server.url(), 2, "lease");
    let mut scrape = String::new();
    let leads = until(Duration::from_secs(15), || {
        scrape = get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
        sample(&scrape, "leasehold_is_leader") == Some(1.0)
    });
    assert!(leads, "never leading by its metrics:\n{scrape}\n{}", agent.stderr());
    for (name, at_least) in [
        ("leasehold_fencing_token", 1.0),
        ("leasehold_lease_acquisitions_total", 1.0),
        ("leasehold_leader_changes_total", 1.0),
        ("leasehold_members", 2.0),
        ("leasehold_connected", 1.0),
    ] {
        let v = sample(&scrape, name).unwrap_or_else(|| panic!("no {name} in:\n{scrape}"));
        assert!(v >= at_least, "{name} = {v}:\n{scrape}");
    }
    let left = sample(&scrape, "leasehold_lease_remaining_seconds").expect("lease left");
    assert!(left > 0.0 && left <= 1.0, "a lease of 1 s has {left} s left");
    assert_eq!(sample(&scrape, "leasehold_waiting_for_recovery"), Some(0.0));
    assert_eq!(sample(&scrape, "leasehold_messages_malformed_total"), Some(0.0));
    assert!(scrape.contains("# TYPE leasehold_lease_renewals counter"), "{scrape}");
    assert_eq!(get(port, "/healthz"), Some((200, "ok\n".into())));
    // The peer's round trip, once a ping has measured it (one peer a second).
    let mut rtt = None;
    until(Duration::from_secs(10), || {
        let text = get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
        rtt = sample(&text, "leasehold_peer_rtt_estimate_seconds{peer=\"n1\"}");
        rtt.is_some()
    });
    let rtt = rtt.expect("n1's round trip");
    assert!(rtt > 0.0 && rtt < 1.0, "a loopback round trip of {rtt} s");
    assert_eq!(get(port, "/nothing").map(|(c, _)| c), Some(404));
    // The server goes: the agent notices within three pings (a quarter of the lease each).
    server.stop();
    let unhealthy = until(Duration::from_secs(10), || {
        get(port, "/healthz").is_some_and(|(c, b)| c == 503 && b.contains("not connected"))
    });
    assert!(unhealthy, "healthz stayed {:?}", get(port, "/healthz"));
    let scrape = get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
    assert_eq!(sample(&scrape, "leasehold_connected"), Some(0.0), "{scrape}");
    assert_eq!(sample(&scrape, "leasehold_is_leader"), Some(0.0), "{scrape}");
}

/// A start that cannot learn the highest token (no state file, `existing`, no peer up) is not
/// healthy: `/healthz` says it waits, and the gauge shows it.
#[test]
fn a_start_that_waits_for_its_peers_is_not_healthy() {
    let server = Server::start(free_port(), None);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start_existing_extra("n0", 0, &server.url(), 3, &["--metrics-addr".into(), addr]);
    let waits = until(Duration::from_secs(10), || {
        get(port, "/healthz").is_some_and(|(c, b)| c == 503 && b.contains("waiting to learn the highest token"))
    });
    assert!(waits, "healthz: {:?}\n{}", get(port, "/healthz"), agent.stderr());
    let scrape = get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
    assert_eq!(sample(&scrape, "leasehold_waiting_for_recovery"), Some(1.0), "{scrape}");
    assert!(
        sample(&scrape, "leasehold_recovery_waits_total").is_some_and(|v| v >= 1.0),
        "{scrape}"
    );
    assert_eq!(sample(&scrape, "leasehold_is_leader"), Some(0.0), "{scrape}");
}
