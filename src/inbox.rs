//! The agent's subscriptions read as one stream.
//!
//! `futures`' `SelectAll` would do, but it allocates a task node each time a subscription
//! yields (it re-queues the stream as a new future); an agent reads a message per beat per
//! peer, so that was one allocation per delivery. A handful of subscriptions polled in turn
//! costs nothing per message.

use crate::network::{Message, Subscription};
use futures::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Subscriptions merged fairly: each poll starts after the one that yielded last, so a busy
/// subject cannot starve the others. Ends when every subscription has ended.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    subs: Vec<Subscription>,
    /// Where the next poll starts.
    next: usize,
}

impl Inbox {
    /// Adds a subscription.
    pub(crate) fn push(&mut self, sub: Subscription) {
        self.subs.push(sub);
    }
}

impl Stream for Inbox {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut i = 0;
        while i < self.subs.len() {
            let k = (self.next + i) % self.subs.len();
            match Pin::new(&mut self.subs[k]).poll_next(cx) {
                Poll::Ready(Some(msg)) => {
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
    fn an_empty_inbox_has_ended() {
        let got: Vec<Message> = futures::executor::block_on(Inbox::default().collect());
        assert!(got.is_empty());
    }
}
