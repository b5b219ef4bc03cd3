//! The impostor: a stranger on the bus who listens as well as talks. It reads the heartbeats
//! (a MAC authenticates, it does not hide), answers every lease request at once with grants in
//! the names of phantom members, and from time to time announces that the current holder has
//! released its lease. Without authenticated messages this elects a second leader; with
//! them, agents count its messages as unauthenticated and drop them.

use crate::fabric::Fabric;
use futures::StreamExt;
use leasehold::wire::{decode, encode, Heartbeat, Incarnation, LeaseRelease, LeaseReply, LeaseRequest};
use leasehold::Network;
use std::time::Duration;

/// The body of a message, with an authentication header (if any) stripped: what anyone on
/// the bus can read.
pub(crate) fn body(payload: &[u8]) -> &[u8] {
    match payload.strip_prefix(b"LH1 ") {
        Some(rest) => rest.iter().position(|b| *b == b'\n').map_or(rest, |i| &rest[i + 1..]),
        None => payload,
    }
}

/// Runs the impostor on fabric index `me` (its own server) until the run ends: grants in the
/// names of `phantoms` phantom members, a forged release every `every`. `counterfeit` seals
/// its messages with a key it made up (so they look authenticated); otherwise they go bare.
pub(crate) async fn run(
    fabric: Fabric,
    me: usize,
    prefix: String,
    phantoms: usize,
    every: Duration,
    counterfeit: bool,
) {
    let net = fabric.client(me);
    let (Ok(mut requests), Ok(mut beats)) = (
        net.subscribe(&format!("{prefix}lease.request")).await,
        net.subscribe(&format!("{prefix}hb")).await,
    ) else {
        return;
    };
    let keys = counterfeit
        .then(|| leasehold::ClusterKeys::parse("sim:000102030405060708090a0b0c0d0e0f").ok())
        .flatten();
    let seal = |subject: &str, b: bytes::Bytes| match &keys {
        Some(k) => k.seal(subject, &b),
        None => b,
    };
    let release = format!("{prefix}lease.release");
    let mut holder: Option<LeaseRelease> = None;
    let mut next_release = madsim::time::Instant::now() + every;
    loop {
        use futures::future::{select, Either};
        let tick = Box::pin(madsim::time::sleep_until(next_release));
        match select(
            select(StreamExt::next(&mut requests), StreamExt::next(&mut beats)),
            tick,
        )
        .await
        {
            Either::Left((Either::Left((m, _)), _)) => {
                let Some(m) = m else { return };
                let (Some(to), Ok(req)) = (m.reply, decode::<LeaseRequest>(body(&m.payload), 1 << 20)) else {
                    continue;
                };
                for k in 0..phantoms {
                    let grant = LeaseReply {
                        granter: Incarnation {
                            id: format!("impostor-{k}"),
                            inc: 1,
                            run: 1,
                        },
                        attempt: req.attempt,
                        token: req.token,
                        granted: true,
                        max_token: req.token,
                    };
                    let _ = net.publish(&to, None, seal(&to, encode(&grant))).await;
                }
            }
            Either::Left((Either::Right((m, _)), _)) => {
                let Some(m) = m else { return };
                if let Ok(hb) = decode::<Heartbeat>(body(&m.payload), 1 << 20) {
                    if let Some(l) = hb.lease {
                        holder = Some(LeaseRelease {
                            holder: Incarnation {
                                id: hb.loc.id,
                                inc: hb.inc,
                                run: hb.run,
                            },
                            token: l.token,
                        });
                    }
                }
            }
            Either::Right(((), _)) => {
                if let Some(h) = holder.take() {
                    let _ = net.publish(&release, None, seal(&release, encode(&h))).await;
                }
                next_release = madsim::time::Instant::now() + every;
            }
        }
    }
}
