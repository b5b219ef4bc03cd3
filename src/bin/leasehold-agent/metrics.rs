//! `--metrics-addr`: the agent's state as Prometheus/OpenMetrics text on `/metrics`, and
//! `/healthz`, which answers 200 while the agent is connected and not waiting (503 with the
//! reason otherwise). Every counter is the library's own (`Stats`), and the gauges what the
//! handle knows (leadership, members), read at each scrape; the health follows the notices.

use leasehold::{Clock, Connection, MembershipHandle, Notice};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every metric the agent exports, and the health it reports.
pub(crate) struct Metrics {
    registry: Registry,
    is_leader: Gauge,
    token: Gauge,
    lease_remaining: Gauge<f64, AtomicU64>,
    members: Gauge,
    /// Each peer's round trip, as its network coordinate estimates it (fed by measured pings).
    peer_rtt: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
    connected: Gauge,
    waiting: Gauge,
    /// The handle's `Stats`, each counter by name (brought up to it at each scrape).
    stats: [(&'static str, Counter); 14],
    /// Health, from the notices: connected, and not waiting to learn the highest token.
    up: AtomicBool,
    recovering: AtomicBool,
    /// One scrape at a time: a counter is brought up to `Stats` by adding the difference,
    /// which two scrapes at once would add twice.
    scraping: std::sync::Mutex<()>,
}

/// A metric registered under the `leasehold_` prefix with its help.
fn metric<M: Default + Clone + prometheus_client::registry::Metric>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> M {
    let m = M::default();
    registry.register(name, help, m.clone());
    m
}

impl Metrics {
    /// The metrics, registered.
    pub(crate) fn new() -> Arc<Self> {
        let mut r = Registry::with_prefix("leasehold");
        let stats = [
            ("leader_changes", "changes of the leader this agent sees"),
            ("lease_acquisitions", "leases this agent took"),
            ("lease_renewals", "renewals of this agent's lease"),
            (
                "recovery_waits",
                "reports of a start still waiting to learn the highest token",
            ),
            ("config_mismatches", "peers seen with other lease settings"),
            ("size_mismatches", "peers seen with another cluster size"),
            ("duplicate_ids", "other processes heard with this agent's ID"),
            ("messages_malformed", "messages dropped as malformed or too large"),
            (
                "messages_out_of_range",
                "well-formed messages dropped for a value out of range",
            ),
            (
                "messages_unauthenticated",
                "messages dropped for want of a valid cluster key seal",
            ),
            ("publish_errors", "publishes that failed"),
            (
                "publishes_dropped",
                "publishes dropped because the network took none within a beat",
            ),
            ("storage_errors", "saves of the state file that failed"),
            ("notices_dropped", "notices dropped for a slow reader"),
        ]
        .map(|(name, help)| (name, metric::<Counter>(&mut r, name, help)));
        Arc::new(Metrics {
            is_leader: metric(&mut r, "is_leader", "1 while this agent holds the lease"),
            token: metric(
                &mut r,
                "fencing_token",
                "the fencing token of the leader's lease, as this agent knows it",
            ),
            lease_remaining: metric(
                &mut r,
                "lease_remaining_seconds",
                "what is left of this agent's lease (0 unless it leads)",
            ),
            members: metric(&mut r, "members", "members this agent hears, itself included"),
            peer_rtt: metric(
                &mut r,
                "peer_rtt_estimate_seconds",
                "each peer's round trip as the network coordinates, fed by measured pings, estimate it",
            ),
            connected: metric(&mut r, "connected", "1 while the connection to the NATS server is up"),
            waiting: metric(
                &mut r,
                "waiting_for_recovery",
                "1 while a start waits to learn the highest token",
            ),
            stats,
            registry: r,
            up: AtomicBool::new(false),
            recovering: AtomicBool::new(false),
            scraping: std::sync::Mutex::new(()),
        })
    }

    /// Follows the health `n` says something of (the counters come from the handle's `Stats`).
    pub(crate) fn observe(&self, n: &Notice) {
        match n {
            Notice::Connection(c) => self.up.store(*c != Connection::Disconnected, Ordering::Relaxed),
            Notice::WaitingForRecovery { .. } => self.recovering.store(true, Ordering::Relaxed),
            Notice::Recovered { .. } => self.recovering.store(false, Ordering::Relaxed),
            _ => {}
        }
    }

    /// The text of `/metrics`, with what `handle` knows now (`clock`: the agent's; `book`: the
    /// coordinates the pings feed).
    fn scrape(&self, handle: &MembershipHandle, clock: &dyn Clock, book: &crate::Book) -> String {
        let _one = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        let status = handle.status();
        let leading = handle.is_leader_now();
        self.is_leader.set(i64::from(leading));
        self.token
            .set(status.fencing_token.map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX)));
        let remaining = status
            .lease_deadline
            .filter(|_| leading)
            .map_or(Duration::ZERO, |d| d.saturating_sub(clock.now()));
        self.lease_remaining.set(remaining.as_secs_f64());
        // (The handle lists the others.)
        let peers = handle.members();
        self.members.set(i64::try_from(peers.len() + 1).unwrap_or(i64::MAX));
        if let Ok(b) = book.lock() {
            for p in &peers {
                if let Some(rtt) = b.estimated_rtt(&p.id) {
                    let label = vec![("peer".to_string(), p.id.clone())];
                    self.peer_rtt.get_or_create(&label).set(rtt.as_secs_f64());
                }
            }
        }
        self.connected.set(i64::from(self.up.load(Ordering::Relaxed)));
        self.waiting.set(i64::from(self.recovering.load(Ordering::Relaxed)));
        let st = handle.stats();
        let values = [
            st.leader_changes,
            st.leases_acquired,
            st.lease_renewals,
            st.recovery_waits,
            st.config_mismatches,
            st.size_mismatches,
            st.duplicate_ids,
            st.malformed,
            st.out_of_range,
            st.unauthenticated,
            st.publish_errors,
            st.publishes_dropped,
            st.storage_errors,
            st.notices_dropped,
        ];
        for ((_, c), v) in self.stats.iter().zip(values) {
            // Counters only grow: add what the handle counted since the last scrape.
            c.inc_by(v.saturating_sub(c.get()));
        }
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// `/healthz`: whether the agent is connected and not waiting, and if not, why.
    fn health(&self) -> Result<(), &'static str> {
        if !self.up.load(Ordering::Relaxed) {
            return Err("not connected to the NATS server");
        }
        if self.recovering.load(Ordering::Relaxed) {
            return Err("waiting to learn the highest token from its peers");
        }
        Ok(())
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the process ends.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    handle: MembershipHandle,
    clock: Arc<dyn Clock>,
    book: crate::Book,
) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, handle, clock, book) = (metrics.clone(), handle.clone(), clock.clone(), book.clone());
        tokio::spawn(async move {
            // A request line and headers fit in 8 KiB; anything longer is not ours to read.
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
            }
            let request = String::from_utf8_lossy(&buf[..len]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, kind, body) = match path {
                "/metrics" => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.scrape(&handle, clock.as_ref(), &book),
                ),
                "/healthz" => match metrics.health() {
                    Ok(()) => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
                    Err(why) => (
                        "503 Service Unavailable",
                        "text/plain; charset=utf-8",
                        format!("{why}\n"),
                    ),
                },
                _ => (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "/metrics or /healthz\n".to_string(),
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
