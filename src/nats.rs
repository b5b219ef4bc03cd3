//! The production [`Network`]: NATS through async-nats (feature `nats`).
//!
//! The agent connects to the one server it was configured with and reconnects only to it
//! (servers the cluster advertises are ignored: hnatsd's rule, which keeps an agent next to
//! its own server). While disconnected, publishes are buffered by the client and may be lost;
//! nothing the election relies on assumes otherwise: a holder that cannot renew simply sees its
//! lease run out on its own clock.

use crate::clock::BoxFuture;
use crate::network::{validate_subject, Connection, Message, NetError, Network, Subscription};
use bytes::Bytes;
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How to reach and authenticate to the NATS server.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Server URL, e.g. `nats://127.0.0.1:4222` (`tls://` forces TLS).
    pub url: String,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// Require TLS.
    pub tls: bool,
    /// Extra root certificates (PEM) to trust.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Connection name shown by the server.
    pub name: Option<String>,
    /// How long the first connection may take before [`NatsNetwork::connect`] gives up with
    /// an error naming the URL (default 10 s, `DEFAULT_CONNECT_TIMEOUT`). Once connected, the connection is re-made
    /// forever.
    pub connect_timeout: Option<Duration>,
    /// Prefix of this connection's reply inboxes (default `_INBOX`), so that a server's
    /// permissions can give each agent its own (see `deploy/nats-server-auth.conf`).
    pub inbox_prefix: Option<String>,
    /// How often the client pings the server (default 60 s, async-nats's). A connection that
    /// answers no ping for three intervals is dropped and re-made, and the agent hears
    /// [`Connection::Disconnected`]: this is how a frozen server or a half-open connection
    /// (nothing arrives, nothing fails) is noticed. Set it to a quarter of the lease (as
    /// `leasehold-agent` does) to notice within three quarters of a lease.
    pub ping_interval: Option<Duration>,
}

/// The client's default ping interval (async-nats's).
pub(crate) const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(60);

/// The first connection's default time limit.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one NATS server.
///
/// ```no_run
/// use leasehold::{Membership, MembershipCfg, MemoryStorage, NatsNetwork, NatsOptions, TokioClock};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let net = NatsNetwork::connect(&NatsOptions {
///     url: "nats://127.0.0.1:4222".into(),
///     ..Default::default()
/// })
/// .await?; // an error naming the URL if no server answers within 10 s
/// let mut cfg = MembershipCfg::default();
/// cfg.id = "orders-1".into();
/// cfg.cluster_size = 3;
/// let handle = Membership::new(cfg, TokioClock::new(), net, MemoryStorage::new())?.start();
/// # let _ = handle;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct NatsNetwork {
    client: async_nats::Client,
    connected: Arc<AtomicBool>,
    disconnects: Arc<AtomicU64>,
    listeners: Listeners,
}

/// Whoever follows the connection's changes ([`Network::connection_events`]).
type Listeners = Arc<std::sync::Mutex<Vec<futures::channel::mpsc::UnboundedSender<Connection>>>>;

impl std::fmt::Debug for NatsNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsNetwork")
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl NatsNetwork {
    /// Connects, trying again until [`NatsOptions::connect_timeout`] if the server is not up
    /// yet, then reconnecting forever (to that server only) when the connection drops. An
    /// unreachable server, a refused login or a TLS failure is an error that names the URL.
    pub async fn connect(opts: &NatsOptions) -> Result<NatsNetwork, NetError> {
        let connected = Arc::new(AtomicBool::new(false));
        let disconnects = Arc::new(AtomicU64::new(0));
        let listeners: Listeners = Default::default();
        let deadline = tokio::time::Instant::now() + opts.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let mut last = String::from("no answer");
        let client = loop {
            let o = Self::options(opts, (&connected, &disconnects, &listeners)).await?;
            match tokio::time::timeout_at(deadline, o.connect(opts.url.as_str())).await {
                Ok(Ok(client)) => break client,
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => {}
            }
            if tokio::time::Instant::now() + Duration::from_millis(200) >= deadline {
                let within = opts.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
                return Err(NetError::Unreachable(format!(
                    "cannot connect to {} within {within:?}: {last}",
                    opts.url
                )));
            }
            tracing::debug!(url = %opts.url, error = %last, "NATS not reachable yet; trying again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // The first Connected event may come before or after `connect` returns.
        connected.store(true, Ordering::SeqCst);
        Ok(NatsNetwork {
            client,
            connected,
            disconnects,
            listeners,
        })
    }

    /// The client options for `opts`, reporting connection events into the two counters.
    async fn options(
        opts: &NatsOptions,
        (connected, disconnects, listeners): (&Arc<AtomicBool>, &Arc<AtomicU64>, &Listeners),
    ) -> Result<async_nats::ConnectOptions, NetError> {
        let (c, d, l) = (connected.clone(), disconnects.clone(), listeners.clone());
        let mut o = async_nats::ConnectOptions::new()
            .ignore_discovered_servers()
            .retain_servers_order()
            .max_reconnects(None)
            .connection_timeout(crate::transport::HANDSHAKE_TIMEOUT)
            .ping_interval(opts.ping_interval.unwrap_or(DEFAULT_PING_INTERVAL))
            .reconnect_delay_callback(crate::transport::reconnect_delay)
            .event_callback(move |ev| {
                let (c, d, l) = (c.clone(), d.clone(), l.clone());
                async move {
                    let change = match ev {
                        async_nats::Event::Connected => {
                            // A connect after a drop is a reconnect; the first is not announced
                            // here (`connect` has not returned yet, and listeners start with the
                            // state then).
                            let was_up = c.swap(true, Ordering::SeqCst);
                            tracing::info!("connected to NATS");
                            (!was_up && d.load(Ordering::SeqCst) > 0).then_some(Connection::Reconnected)
                        }
                        async_nats::Event::Disconnected => {
                            c.store(false, Ordering::SeqCst);
                            d.fetch_add(1, Ordering::SeqCst);
                            tracing::warn!("disconnected from NATS; reconnecting");
                            Some(Connection::Disconnected)
                        }
                        other => {
                            tracing::debug!(event = %other, "NATS event");
                            None
                        }
                    };
                    if let Some(change) = change {
                        let mut g = l.lock().unwrap_or_else(|e| e.into_inner());
                        g.retain(|tx| tx.unbounded_send(change).is_ok());
                    }
                }
            });
        if let (Some(u), Some(p)) = (&opts.user, &opts.password) {
            o = o.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &opts.token {
            o = o.token(t.clone());
        }
        if let Some(f) = &opts.credentials_file {
            o = o
                .credentials_file(f)
                .await
                .map_err(|e| NetError::Disconnected(format!("credentials {}: {e}", f.display())))?;
        }
        if opts.tls {
            o = o.require_tls(true);
        }
        if let Some(ca) = &opts.tls_ca {
            o = o.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &opts.tls_client {
            o = o.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(n) = &opts.name {
            o = o.name(n.clone());
        }
        if let Some(p) = &opts.inbox_prefix {
            o = o.custom_inbox_prefix(p.clone());
        }
        Ok(o)
    }

    /// Whether the connection is up now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// How many times the connection dropped.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::SeqCst)
    }

    /// The underlying client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

fn to_message(m: async_nats::Message) -> Message {
    Message {
        subject: m.subject.to_string(),
        reply: m.reply.map(|r| r.to_string()),
        payload: m.payload,
    }
}

impl Network for NatsNetwork {
    fn publish(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> BoxFuture<'_, Result<(), NetError>> {
        let (subject, reply) = (subject.to_string(), reply.map(str::to_string));
        Box::pin(async move {
            validate_subject(&subject, false)?;
            let size = payload.len();
            let r = match reply {
                Some(r) => self.client.publish_with_reply(subject, r, payload).await,
                None => self.client.publish(subject, payload).await,
            };
            r.map_err(|e| match e.kind() {
                async_nats::client::PublishErrorKind::MaxPayloadExceeded => NetError::PayloadTooLarge {
                    size,
                    max: self.client.server_info().max_payload,
                },
                async_nats::client::PublishErrorKind::InvalidSubject => NetError::InvalidSubject(e.to_string()),
                _ => NetError::Disconnected(e.to_string()),
            })
        })
    }

    fn subscribe(&self, subject: &str) -> BoxFuture<'_, Result<Subscription, NetError>> {
        let subject = subject.to_string();
        Box::pin(async move {
            validate_subject(&subject, true)?;
            let sub = self
                .client
                .subscribe(subject)
                .await
                .map_err(|e| NetError::Disconnected(e.to_string()))?;
            Ok(Subscription::from_stream(sub.map(to_message)))
        })
    }

    fn new_inbox(&self) -> String {
        self.client.new_inbox()
    }

    fn connection_events(&self) -> Option<futures::stream::BoxStream<'static, Connection>> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let now = if self.is_connected() {
            Connection::Connected
        } else {
            Connection::Disconnected
        };
        let _ = tx.unbounded_send(now);
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        Some(Box::pin(rx))
    }
}
