//! Pings as request/reply over the [`Network`](crate::Network): the pinged side answers with
//! its coordinate, and the pinger feeds the measured round trip into its [`CoordinateBook`].
//!
//! Anyone on the bus can answer a request, and the first answer would win. So a ping waits,
//! until its time-out, for an answer that names the server it pinged and carries a valid
//! coordinate; every other reply (another name, an invalid or missing coordinate, bytes that
//! do not decode) is ignored, and the measurement is recorded under the pinged server's name,
//! never under a name a reply gives.

use super::coords::{Coordinate, CoordinateBook};
use super::{Pinger, Server};
use crate::clock::{BoxFuture, Clock};
use crate::config::Bug;
use crate::network::{request, Network};
use crate::wire::{decode, encode};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A ping's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pong {
    /// Who answers.
    pub name: String,
    /// Its coordinate.
    pub coordinate: Coordinate,
}

/// A [`Pinger`] over a network, with a time-out, that keeps coordinates up to date.
pub struct NetworkPinger<N, C> {
    net: N,
    clock: C,
    timeout: Duration,
    book: Arc<Mutex<CoordinateBook>>,
}

impl<N: Network, C: Clock> NetworkPinger<N, C> {
    /// A pinger waiting at most `timeout` for each answer, updating `book`.
    pub fn new(net: N, clock: C, timeout: Duration, book: Arc<Mutex<CoordinateBook>>) -> Self {
        NetworkPinger {
            net,
            clock,
            timeout,
            book,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, CoordinateBook> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pinger before issue 30 (planted bug [`Bug::UncheckedCoordinates`]): the first reply
    /// wins, and it is recorded under the name it gives.
    async fn ping_unchecked(&self, subject: &str) -> bool {
        let t0 = self.clock.now();
        let Ok(reply) = request(
            &self.net,
            &self.clock,
            subject,
            bytes::Bytes::from_static(b"{}"),
            self.timeout,
        )
        .await
        else {
            return false;
        };
        let rtt = self.clock.now().saturating_sub(t0);
        match decode::<Pong>(&reply.payload, crate::wire::DEFAULT_MAX_MESSAGE) {
            Ok(p) => {
                let _ = self.book().observe(&p.name, p.coordinate, rtt);
                true
            }
            Err(_) => false,
        }
    }
}

impl<N: Network, C: Clock> Pinger for NetworkPinger<N, C> {
    fn ping(&self, server: &Server) -> BoxFuture<'_, bool> {
        let (subject, name) = (server.ping_subject.clone(), server.name.clone());
        Box::pin(async move {
            if self.book().bugs().has(Bug::UncheckedCoordinates) {
                return self.ping_unchecked(&subject).await;
            }
            let t0 = self.clock.now();
            let deadline = t0.saturating_add(self.timeout);
            let inbox = self.net.new_inbox();
            let Ok(mut sub) = self.net.subscribe(&inbox).await else {
                return false;
            };
            if self
                .net
                .publish(&subject, Some(&inbox), bytes::Bytes::from_static(b"{}"))
                .await
                .is_err()
            {
                return false;
            }
            loop {
                let left = deadline.saturating_sub(self.clock.now());
                if left.is_zero() {
                    return false;
                }
                let Some(Some(reply)) = crate::clock::timeout(&self.clock, left, sub.next()).await else {
                    return false;
                };
                let Ok(p) = decode::<Pong>(&reply.payload, crate::wire::DEFAULT_MAX_MESSAGE) else {
                    continue;
                };
                if p.name != name || !p.coordinate.is_valid() {
                    continue;
                }
                let rtt = self.clock.now().saturating_sub(t0);
                // A round trip out of range moves nothing, but the server did answer.
                let _ = self.book().observe(&name, p.coordinate, rtt);
                return true;
            }
        })
    }
}

/// Answers pings on `subject` as `name` with the coordinate in `book`, until the subscription
/// ends. Run it next to the agent of every server.
pub async fn serve_pings<N: Network>(
    net: N,
    subject: String,
    name: String,
    book: Arc<Mutex<CoordinateBook>>,
) -> Result<(), crate::NetError> {
    let mut sub = net.subscribe(&subject).await?;
    while let Some(m) = sub.next().await {
        if let Some(reply) = m.reply {
            let coordinate = book.lock().unwrap_or_else(|e| e.into_inner()).me().clone();
            let _ = net
                .publish(
                    &reply,
                    None,
                    encode(&Pong {
                        name: name.clone(),
                        coordinate,
                    }),
                )
                .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BugKnobs;
    use crate::hub::Hub;
    use futures::executor::block_on;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::SystemTime;

    /// A clock that moves 1 ms at every reading; its sleeps spin until it has moved enough.
    #[derive(Clone, Default)]
    struct Ticking(Arc<AtomicU64>);
    impl Clock for Ticking {
        fn now(&self) -> Duration {
            Duration::from_millis(self.0.fetch_add(1, Ordering::Relaxed))
        }
        fn wall(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH
        }
        fn sleep_until(&self, deadline: Duration) -> BoxFuture<'static, ()> {
            let me = self.clone();
            Box::pin(futures::future::poll_fn(move |cx| {
                if me.now() >= deadline {
                    std::task::Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
            }))
        }
    }

    fn pong(name: &str, x: f64) -> bytes::Bytes {
        encode(&Pong {
            name: name.into(),
            coordinate: Coordinate {
                vec: [x, 0.0],
                height: 0.01,
                error: 0.5,
            },
        })
    }

    /// Waits for one request on `subject` and sends each of `answers` to its reply subject.
    async fn answer(sub: &mut crate::network::Subscription, net: &crate::hub::HubClient, answers: Vec<bytes::Bytes>) {
        if let Some(m) = sub.next().await {
            let to = m.reply.expect("a ping has a reply subject");
            for a in answers {
                net.publish(&to, None, a).await.unwrap();
            }
        }
    }

    /// Pings `s1` once while strangers' `answers` go out before the real one (if any), and
    /// returns whether the ping counted and the book afterwards.
    fn ping_with(answers: Vec<bytes::Bytes>, honest: bool, bugs: BugKnobs) -> (bool, CoordinateBook) {
        let hub = Hub::new();
        let book = Arc::new(Mutex::new(CoordinateBook::new(1).with_bugs(bugs)));
        let pinger = NetworkPinger::new(
            hub.client(),
            Ticking::default(),
            Duration::from_millis(200),
            book.clone(),
        );
        let s1 = Server::new("s1", "dc1", "p.");
        let net = hub.client();
        let mut all = answers;
        if honest {
            all.push(pong("s1", 5.0));
        }
        let ok = block_on(async {
            let mut sub = net.subscribe(&s1.ping_subject).await.unwrap();
            futures::future::join(pinger.ping(&s1), answer(&mut sub, &net, all))
                .await
                .0
        });
        let b = book.lock().unwrap().clone();
        (ok, b)
    }

    #[test]
    fn a_reply_counts_only_for_the_server_pinged() {
        // A stranger answers a ping of s1 first, signed "s2", with a coordinate 3 s away.
        let (ok, book) = ping_with(vec![pong("s2", 3000.0)], true, BugKnobs::default());
        assert!(ok, "s1's own answer still counts");
        assert_eq!(book.get("s2"), None, "nothing is recorded for s2");
        assert_eq!(book.get("s1").map(|c| c.vec[0]), Some(5.0), "s1's own coordinate is");
        // The router before issue 30 took the first reply in the name it gave.
        let (ok, book) = ping_with(
            vec![pong("s2", 3000.0)],
            true,
            BugKnobs::planted(Bug::UncheckedCoordinates),
        );
        assert!(ok);
        assert_eq!(
            book.get("s2").map(|c| c.vec[0]),
            Some(3000.0),
            "the planted bug is steered"
        );
        assert_eq!(book.get("s1"), None);
    }

    #[test]
    fn replies_with_invalid_coordinates_or_junk_are_not_answers() {
        let nan =
            bytes::Bytes::from_static(br#"{"name":"s1","coordinate":{"vec":[null,0.0],"height":0.01,"error":0.5}}"#);
        for forged in [
            pong("s1", 1e30),
            pong("s1", 1e200),
            nan,
            bytes::Bytes::from_static(b"\x00{junk"),
        ] {
            let (ok, book) = ping_with(vec![forged.clone()], false, BugKnobs::default());
            assert!(!ok, "only a stranger answered {forged:?}: the ping times out");
            assert!(book.all().is_empty());
            assert_eq!(book.me(), &Coordinate::seeded(1), "and nothing moved");
            let (ok, book) = ping_with(vec![forged], true, BugKnobs::default());
            assert!(ok, "the server's own answer after it counts");
            assert!(book.me().is_valid());
            assert_eq!(book.get("s1").map(|c| c.vec[0]), Some(5.0));
        }
    }
}
