//! The network trait: NATS-shaped publish/subscribe with request/reply.

use crate::clock::{BoxFuture, Clock};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One message as delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subject it was published on (never a wildcard).
    pub subject: String,
    /// Where the publisher wants replies, if anywhere.
    pub reply: Option<String>,
    /// The body, opaque to the network.
    pub payload: Bytes,
}

/// Why a network operation failed.
///
/// Errors are transient unless stated: the agent's loops log them, count them and carry on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The subject is empty, has an empty token, or uses a wildcard where none is allowed.
    #[error("invalid subject {0:?}")]
    InvalidSubject(String),
    /// The payload is larger than the network accepts.
    #[error("payload of {size} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Size of the rejected payload.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The connection to the server is down; the operation was not carried out.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// No reply arrived in time (request/reply only).
    #[error("request timed out")]
    Timeout,
    /// The network was shut down for good.
    #[error("network closed")]
    Closed,
    /// The first connection could not be made in time (the message names the server and the
    /// last reason: refused, unreachable, login or TLS failure).
    #[error("{0}")]
    Unreachable(String),
}

/// A NATS-shaped message network.
///
/// Contract, which every implementation (in-process hub, simulated NATS, async-nats) keeps:
///
/// * **Subjects** are dot-separated tokens. Subscriptions may use `*` (exactly one token) and a
///   trailing `>` (one or more tokens); publishes may not use wildcards. See
///   [`subject_matches`].
/// * **Delivery** is at most once, with no ordering promise across publishers. A subscriber
///   whose queue is full loses messages (NATS calls it a slow consumer); the loss is counted,
///   never blocking the publisher. A publish may succeed and still never be delivered.
/// * **Request/reply** is a publish with a reply subject; [`request`] builds it from
///   [`Network::new_inbox`], [`Network::subscribe`] and [`Network::publish`].
/// * A returned error means the operation did not happen; it never means "maybe".
pub trait Network: Send + Sync + 'static {
    /// Publishes `payload` on `subject`, asking for replies on `reply` if given.
    fn publish(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> BoxFuture<'_, Result<(), NetError>>;

    /// Subscribes to `subject` (wildcards allowed). Messages published after this returns are
    /// delivered to the subscription until it is dropped.
    fn subscribe(&self, subject: &str) -> BoxFuture<'_, Result<Subscription, NetError>>;

    /// A subject unique to this connection, for replies.
    fn new_inbox(&self) -> String;

    /// Changes of the connection to the server, starting with the state now (`Connected` if
    /// it is up). `None` for networks that are always connected (the hub, the simulator).
    fn connection_events(&self) -> Option<futures::stream::BoxStream<'static, Connection>> {
        None
    }
}

/// A change of a network's connection to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Connected (first time).
    Connected,
    /// The connection dropped; publishes may be lost until it is back.
    Disconnected,
    /// Connected again after a drop.
    Reconnected,
}

impl<N: Network + ?Sized> Network for Arc<N> {
    fn publish(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> BoxFuture<'_, Result<(), NetError>> {
        (**self).publish(subject, reply, payload)
    }
    fn subscribe(&self, subject: &str) -> BoxFuture<'_, Result<Subscription, NetError>> {
        (**self).subscribe(subject)
    }
    fn new_inbox(&self) -> String {
        (**self).new_inbox()
    }
    fn connection_events(&self) -> Option<futures::stream::BoxStream<'static, Connection>> {
        (**self).connection_events()
    }
}

/// Default queue length of a subscription before messages are dropped.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 4096;

/// How long the NATS adapter waits for a server's handshake before a (re)connect attempt fails.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the NATS adapter waits before reconnect attempt `attempt` (1 for the first after a
/// drop): 100 ms more each time, at most a second. One function for the adapter and for the
/// simulator's model of it.
pub fn reconnect_delay(attempt: usize) -> std::time::Duration {
    std::time::Duration::from_millis((attempt as u64).saturating_mul(100).min(1000))
}

/// The receiving end of a subscription. Dropping it unsubscribes.
pub struct Subscription {
    inner: std::pin::Pin<Box<dyn futures::Stream<Item = Message> + Send>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

/// The delivering end of a subscription, held by a network implementation.
#[derive(Debug, Clone)]
pub struct Delivery {
    // One shared sender: futures' channel gives every sender clone a slot of its own, so
    // cloning per message would make the queue unbounded.
    tx: Arc<std::sync::Mutex<mpsc::Sender<Message>>>,
    dropped: Arc<AtomicU64>,
    /// Set when the subscriber drops its end: read on every delivery to every subscription of
    /// a server, so without taking the sender's lock.
    gone: Arc<AtomicBool>,
}

/// A subscription's receiving end, which says so when it is dropped.
struct Receiver {
    rx: mpsc::Receiver<Message>,
    gone: Arc<AtomicBool>,
}

impl futures::Stream for Receiver {
    type Item = Message;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        self.rx.poll_next_unpin(cx)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.gone.store(true, Ordering::Release);
    }
}

impl Subscription {
    /// Makes a subscription queue holding at most `capacity` undelivered messages.
    pub fn channel(capacity: usize) -> (Delivery, Subscription) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let gone = Arc::new(AtomicBool::new(false));
        (
            Delivery {
                tx: Arc::new(std::sync::Mutex::new(tx)),
                dropped: Arc::new(AtomicU64::new(0)),
                gone: gone.clone(),
            },
            Subscription {
                inner: Box::pin(Receiver { rx, gone }),
            },
        )
    }

    /// A subscription over any stream of messages (how adapters such as the NATS one wrap
    /// their client's subscriber; dropping the subscription drops the stream).
    pub fn from_stream(stream: impl futures::Stream<Item = Message> + Send + 'static) -> Subscription {
        Subscription {
            inner: Box::pin(stream),
        }
    }

    /// The next message, or `None` once the network has closed the subscription.
    pub async fn next(&mut self) -> Option<Message> {
        self.inner.next().await
    }

    /// A message if one is queued now, without waiting.
    pub fn try_next(&mut self) -> Option<Message> {
        futures::FutureExt::now_or_never(self.inner.next()).flatten()
    }
}

impl Delivery {
    /// Queues `msg`; returns `false` (and counts a drop) if the queue is full or the
    /// subscriber has gone.
    pub fn deliver(&self, msg: Message) -> bool {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match tx.try_send(msg) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Whether the subscriber has dropped its [`Subscription`].
    pub fn is_closed(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// How many messages were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Whether `subject` (no wildcards) matches `pattern` (which may use `*` and a trailing `>`).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Checks a subject: non-empty tokens, no whitespace; wildcards only where `allow_wildcards`,
/// and `>` only as the last token.
pub fn validate_subject(subject: &str, allow_wildcards: bool) -> Result<(), NetError> {
    let bad = || NetError::InvalidSubject(subject.to_string());
    if subject.is_empty() {
        return Err(bad());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() || t.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        let wildcard = *t == "*" || *t == ">";
        if wildcard && !allow_wildcards {
            return Err(bad());
        }
        if *t == ">" && i + 1 != tokens.len() {
            return Err(bad());
        }
    }
    Ok(())
}

/// Checks a publish as a NATS server does before accepting it: a valid subject and reply
/// subject (no wildcards), and a payload of at most `max_payload` bytes.
pub fn check_publish(subject: &str, reply: Option<&str>, payload: usize, max_payload: usize) -> Result<(), NetError> {
    validate_subject(subject, false)?;
    if let Some(r) = reply {
        validate_subject(r, false)?;
    }
    if payload > max_payload {
        return Err(NetError::PayloadTooLarge {
            size: payload,
            max: max_payload,
        });
    }
    Ok(())
}

/// The subscriptions of one server (or of the in-process hub), matched as NATS matches
/// subjects. A list, not a map: delivery follows subscription order, which keeps runs
/// reproducible.
#[derive(Debug, Default)]
pub struct SubjectTable {
    subs: Vec<Entry>,
}

/// One subscription: its pattern, whether the pattern is a plain subject (matched by
/// equality, the common case: no token walk per message), and its queue.
#[derive(Debug)]
struct Entry {
    pattern: String,
    literal: bool,
    delivery: Delivery,
}

impl Entry {
    fn matches(&self, subject: &str) -> bool {
        if self.literal {
            self.pattern == subject
        } else {
            subject_matches(&self.pattern, subject)
        }
    }
}

impl SubjectTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription to `pattern` (wildcards allowed) with a queue of `capacity`.
    pub fn subscribe(&mut self, pattern: &str, capacity: usize) -> Result<Subscription, NetError> {
        validate_subject(pattern, true)?;
        let (delivery, sub) = Subscription::channel(capacity);
        let literal = !pattern.split('.').any(|t| t == "*" || t == ">");
        self.subs.push(Entry {
            pattern: pattern.to_string(),
            literal,
            delivery,
        });
        Ok(sub)
    }

    /// Whether any live subscription matches `subject` (a route carries only what the far
    /// server has interest in, as NATS routes do).
    pub fn has_interest(&self, subject: &str) -> bool {
        self.subs.iter().any(|e| e.matches(subject) && !e.delivery.is_closed())
    }

    /// Hands `msg` to every matching subscription, forgetting those whose subscriber has
    /// gone; returns how many queued it (a full queue drops it, counted by its [`Delivery`]).
    pub fn deliver(&mut self, msg: &Message) -> u64 {
        // Forget the gone first, then deliver: dropping a sender can wake a task, and the
        // order of wakes is part of a simulated run's schedule.
        self.subs.retain(|e| !e.delivery.is_closed());
        let mut n = 0;
        for e in &self.subs {
            if e.matches(&msg.subject) && e.delivery.deliver(msg.clone()) {
                n += 1;
            }
        }
        n
    }

    /// Messages dropped so far because a subscriber's queue was full.
    pub fn dropped(&self) -> u64 {
        self.subs.iter().map(|e| e.delivery.dropped()).sum()
    }

    /// Ends every subscription.
    pub fn clear(&mut self) {
        self.subs.clear();
    }
}

/// Sends one request and waits up to `timeout` (on `clock`) for the first reply.
pub async fn request<N, C>(
    net: &N,
    clock: &C,
    subject: &str,
    payload: Bytes,
    timeout: Duration,
) -> Result<Message, NetError>
where
    N: Network + ?Sized,
    C: Clock + ?Sized,
{
    let inbox = net.new_inbox();
    let mut sub = net.subscribe(&inbox).await?;
    net.publish(subject, Some(&inbox), payload).await?;
    match crate::clock::timeout(clock, timeout, sub.next()).await {
        Some(Some(msg)) => Ok(msg),
        Some(None) => Err(NetError::Closed),
        None => Err(NetError::Timeout),
    }
}

impl futures::Stream for Subscription {
    type Item = Message;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        self.inner.poll_next_unpin(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_in_nats() {
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
        assert!(subject_matches("a.*", "a.b"));
        assert!(!subject_matches("a.*", "a.b.c"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(subject_matches("a.>", "a.b"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches("*.b.>", "x.b.y.z"));
        assert!(!subject_matches("*.b.>", "x.c.y"));
    }

    #[test]
    fn subjects_are_validated() {
        assert!(validate_subject("a.b", false).is_ok());
        assert!(validate_subject("a.*", false).is_err());
        assert!(validate_subject("a.*", true).is_ok());
        assert!(validate_subject("a.>.b", true).is_err());
        assert!(validate_subject("a..b", true).is_err());
        assert!(validate_subject("", true).is_err());
        assert!(validate_subject("a b", true).is_err());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (d, mut s) = Subscription::channel(1);
        let m = Message {
            subject: "a".into(),
            reply: None,
            payload: Bytes::from_static(b"x"),
        };
        // futures' bounded channel holds capacity + one slot for the (single) sender.
        let mut delivered = 0;
        for _ in 0..10 {
            if d.deliver(m.clone()) {
                delivered += 1;
            }
        }
        assert_eq!(delivered, 2);
        assert_eq!(d.dropped(), 10 - delivered);
        assert_eq!(s.try_next(), Some(m));
        assert!(!d.is_closed());
        drop(s);
        assert!(d.is_closed());
    }

    #[test]
    fn a_dropped_subscription_is_no_interest_and_is_forgotten() {
        let mut table = SubjectTable::new();
        let kept = table.subscribe("a.*", 8).unwrap();
        let gone = table.subscribe("a.b", 8).unwrap();
        assert!(table.has_interest("a.b"));
        drop(kept);
        assert!(table.has_interest("a.b"), "the other subscription still listens");
        drop(gone);
        assert!(!table.has_interest("a.b"));
        let m = Message {
            subject: "a.b".into(),
            reply: None,
            payload: Bytes::from_static(b"x"),
        };
        assert_eq!(table.deliver(&m), 0);
        assert!(table.subs.is_empty(), "both forgotten");
        assert_eq!(table.dropped(), 0, "a message to nobody is not a drop");
    }
}
