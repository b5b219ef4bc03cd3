//! The agent's subscriptions read as one stream.
//!
//! `futures`' `SelectAll` would do, but it allocates a task node each time a subscription
//! yields (it re-queues the stream as a new future); an agent reads a message per beat per
//! peer, so that was one allocation per delivery. Here each subscription has a waker made
//! once, and a message costs one poll of the subscription that woke.

use crate::network::{Message, Subscription};
use futures::task::{waker_ref, ArcWake, AtomicWaker};
use futures::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Subscriptions merged fairly: each poll starts after the one that yielded last, so a busy
/// subject cannot starve the others. Ends when every subscription has ended.
///
/// Only subscriptions that woke since they were last polled are polled again (each has its
/// own waker, made once, that marks it and wakes the reader), so a message costs one poll of
/// one subscription, not one of each.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    subs: Vec<(Subscription, Arc<Mark>)>,
    /// Where the next poll starts.
    next: usize,
    /// Whoever reads the inbox.
    reader: Arc<AtomicWaker>,
}

/// A subscription's waker: marks it as worth polling and wakes the reader.
#[derive(Debug)]
struct Mark {
    woken: AtomicBool,
    reader: Arc<AtomicWaker>,
}

impl ArcWake for Mark {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.woken.store(true, Ordering::Release);
        arc_self.reader.wake();
    }
}

impl Inbox {
    /// Adds a subscription.
    pub(crate) fn push(&mut self, sub: Subscription) {
        let mark = Arc::new(Mark {
            // Never polled yet: it may hold messages already.
            woken: AtomicBool::new(true),
            reader: self.reader.clone(),
        });
        self.subs.push((sub, mark));
    }
}

impl Stream for Inbox {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.reader.register(cx.waker());
        let mut i = 0;
        while i < self.subs.len() {
            let k = (self.next + i) % self.subs.len();
            let (sub, mark) = &mut self.subs[k];
            // Cleared before the poll, so a wake during or after it is not lost.
            if !mark.woken.swap(false, Ordering::AcqRel) {
                i += 1;
                continue;
            }
            let waker = waker_ref(mark);
            match Pin::new(sub).poll_next(&mut Context::from_waker(&waker)) {
                Poll::Ready(Some(msg)) => {
                    // It may hold more.
                    mark.woken.store(true, Ordering::Release);
                    self.next = (k + 1) % self.subs.len();
                    return Poll::Ready(Some(msg));
                }
                Poll::Ready(None) => {
                    // An ended subscription is dropped; the one that took its place is next.
                    self.subs.remove(k);
                    if self.subs.is_empty() {
                        return Poll::Ready(None);
                    }
                    self.next = k % self.subs.len();
                    i = 0;
                }
                Poll::Pending => i += 1,
            }
        }
        if self.subs.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn msg(subject: &str) -> Message {
        Message {
            subject: subject.into(),
            reply: None,
            payload: bytes::Bytes::new(),
        }
    }

    fn sub(subjects: &[&str]) -> Subscription {
        Subscription::from_stream(futures::stream::iter(
            subjects.iter().map(|s| msg(s)).collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn takes_turns_and_ends_when_every_subscription_has() {
        let mut inbox = Inbox::default();
        inbox.push(sub(&["a1", "a2", "a3"]));
        inbox.push(sub(&["b1"]));
        inbox.push(sub(&["c1", "c2"]));
        let got: Vec<String> = futures::executor::block_on(inbox.map(|m| m.subject).collect());
        assert_eq!(got, ["a1", "b1", "c1", "a2", "c2", "a3"]);
    }

    #[test]
    fn a_message_sent_to_a_waiting_subscription_wakes_the_reader() {
        let (tx_a, a) = Subscription::channel(4);
        let (tx_b, b) = Subscription::channel(4);
        let mut inbox = Inbox::default();
        inbox.push(a);
        inbox.push(b);
        let woken = Arc::new(Woken::default());
        let waker = futures::task::waker(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut inbox).poll_next(&mut cx).is_pending());
        assert!(tx_b.deliver(msg("b1")));
        assert!(woken.0.load(Ordering::Acquire), "the reader is woken");
        match Pin::new(&mut inbox).poll_next(&mut cx) {
            Poll::Ready(Some(m)) => assert_eq!(m.subject, "b1"),
            other => panic!("expected b1, got {other:?}"),
        }
        assert!(tx_a.deliver(msg("a1")) && tx_b.deliver(msg("b2")));
        let got: Vec<String> = (0..2)
            .map(|_| match Pin::new(&mut inbox).poll_next(&mut cx) {
                Poll::Ready(Some(m)) => m.subject,
                other => panic!("expected a message, got {other:?}"),
            })
            .collect();
        // After b, a's turn comes first.
        assert_eq!(got, ["a1", "b2"]);
        assert!(Pin::new(&mut inbox).poll_next(&mut cx).is_pending());
    }

    #[derive(Default)]
    struct Woken(AtomicBool);

    impl ArcWake for Woken {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.store(true, Ordering::Release);
        }
    }

    #[test]
    fn an_empty_inbox_has_ended() {
        let got: Vec<Message> = futures::executor::block_on(Inbox::default().collect());
        assert!(got.is_empty());
    }
}
