//! The in-process hub: the embedded default [`Network`], the Rust form of hnatsd's
//! `NewInternalClientPair`. Every [`HubClient`] of one [`Hub`] sees every other's publishes.

use crate::clock::BoxFuture;
use crate::network::{
    check_publish, Message, NetError, Network, SubjectTable, Subscription, DEFAULT_SUBSCRIPTION_CAPACITY,
};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Default largest payload the hub accepts (NATS' default `max_payload` is 1 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// An in-process message hub. Cheap to clone; clones share the same subjects.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    subs: Mutex<SubjectTable>,
    next_client: AtomicU64,
    max_payload: usize,
    closed: std::sync::atomic::AtomicBool,
}

/// One connection to a [`Hub`].
#[derive(Debug, Clone)]
pub struct HubClient {
    hub: Hub,
    id: u64,
    inboxes: Arc<AtomicU64>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub with the default maximum payload.
    pub fn new() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// A hub that rejects payloads above `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        Hub {
            inner: Arc::new(HubInner {
                subs: Mutex::new(SubjectTable::new()),
                next_client: AtomicU64::new(0),
                max_payload,
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// A new connection to this hub.
    pub fn client(&self) -> HubClient {
        HubClient {
            hub: self.clone(),
            id: self.inner.next_client.fetch_add(1, Ordering::Relaxed),
            inboxes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Closes the hub: later operations fail with [`NetError::Closed`] and every subscription
    /// ends.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.lock().clear();
    }

    /// Messages dropped so far because a subscriber's queue was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SubjectTable> {
        // A panic while holding the lock cannot leave the table inconsistent; keep going.
        self.inner.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_open(&self) -> Result<(), NetError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(NetError::Closed)
        } else {
            Ok(())
        }
    }

    fn publish_now(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> Result<(), NetError> {
        self.check_open()?;
        check_publish(subject, reply, payload.len(), self.inner.max_payload)?;
        self.lock().deliver(&Message {
            subject: subject.to_string(),
            reply: reply.map(str::to_string),
            payload,
        });
        Ok(())
    }

    fn subscribe_now(&self, subject: &str) -> Result<Subscription, NetError> {
        self.check_open()?;
        self.lock().subscribe(subject, DEFAULT_SUBSCRIPTION_CAPACITY)
    }
}

impl Network for HubClient {
    fn publish(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> BoxFuture<'_, Result<(), NetError>> {
        let r = self.hub.publish_now(subject, reply, payload);
        Box::pin(async move { r })
    }

    fn subscribe(&self, subject: &str) -> BoxFuture<'_, Result<Subscription, NetError>> {
        let r = self.hub.subscribe_now(subject);
        Box::pin(async move { r })
    }

    fn new_inbox(&self) -> String {
        let n = self.inboxes.fetch_add(1, Ordering::Relaxed);
        format!("_INBOX.hub{}.{}", self.id, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn publishes_reach_matching_subscribers_only() {
        let hub = Hub::new();
        let (a, b) = (hub.client(), hub.client());
        block_on(async {
            let mut all = a.subscribe("x.>").await.unwrap();
            let mut one = a.subscribe("x.y").await.unwrap();
            b.publish("x.y", Some("r.1"), Bytes::from_static(b"1")).await.unwrap();
            b.publish("x.z.w", None, Bytes::from_static(b"2")).await.unwrap();
            let m = all.next().await.unwrap();
            assert_eq!((m.subject.as_str(), m.reply.as_deref()), ("x.y", Some("r.1")));
            assert_eq!(all.next().await.unwrap().payload, Bytes::from_static(b"2"));
            assert_eq!(one.next().await.unwrap().subject, "x.y");
            assert_eq!(one.try_next(), None);
        });
    }

    #[test]
    fn bad_subjects_and_large_payloads_are_errors() {
        let hub = Hub::with_max_payload(4);
        let c = hub.client();
        block_on(async {
            assert!(matches!(
                c.publish("a.*", None, Bytes::new()).await,
                Err(NetError::InvalidSubject(_))
            ));
            assert!(matches!(
                c.publish("a", None, Bytes::from_static(b"12345")).await,
                Err(NetError::PayloadTooLarge { size: 5, max: 4 })
            ));
            hub.close();
            assert_eq!(c.publish("a", None, Bytes::new()).await, Err(NetError::Closed));
        });
    }

    #[test]
    fn inboxes_are_unique_per_client() {
        let hub = Hub::new();
        let (a, b) = (hub.client(), hub.client());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            assert!(seen.insert(a.new_inbox()));
            assert!(seen.insert(b.new_inbox()));
        }
    }
}
