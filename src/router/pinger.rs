//! Pings as request/reply over the [`Network`](crate::Network): the pinged side answers with
//! its coordinate, and the pinger feeds the measured round trip into its [`CoordinateBook`].

use super::coords::{Coordinate, CoordinateBook};
use super::{Pinger, Server};
use crate::clock::{BoxFuture, Clock};
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
}

impl<N: Network, C: Clock> Pinger for NetworkPinger<N, C> {
    fn ping(&self, server: &Server) -> BoxFuture<'_, bool> {
        let subject = server.ping_subject.clone();
        Box::pin(async move {
            let t0 = self.clock.now();
            let Ok(reply) = request(
                &self.net,
                &self.clock,
                &subject,
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
                    self.book
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .observe(&p.name, p.coordinate, rtt);
                    true
                }
                Err(_) => false,
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
