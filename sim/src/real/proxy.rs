//! Route proxies: every route between two real nats-servers runs through one of these, so
//! the runner can cut it (each direction on its own), delay it (every route of one node more,
//! for a slow link) and make it lossy while the servers and agents stay unchanged.
//!
//! A route is one TCP connection carrying both directions. A cut direction holds its bytes
//! (nothing is dropped mid-stream, which would only corrupt the protocol): as on a real
//! network, the other side stops hearing, its pings go unanswered and it closes the route;
//! what was held is delivered if the cut heals first, as TCP would. Loss on a TCP path shows
//! as retransmission delay, so a lost chunk arrives one retransmission time-out late.

use crate::scenario::DurRange;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The retransmission time-out a lost chunk waits (Linux's minimum RTO).
pub const RTO: Duration = Duration::from_millis(200);

/// What the network does to every route, shared by all proxies.
#[derive(Debug)]
pub struct Net {
    /// Directed cuts `(from, to)` between node indices.
    pub cuts: Vec<(usize, usize)>,
    /// Latency of each chunk.
    pub latency: DurRange,
    /// Chance that a chunk is lost (and retransmitted after [`RTO`]).
    pub loss: f64,
    /// Quantised time (`[network] tick`), from the run's true time zero (ns of
    /// `procs::true_ns`): a chunk is written just before the next tick boundary instead.
    pub(crate) grid: Option<(u128, crate::quantum::Quantum)>,
    /// Extra latency of every chunk to and from each node's server (a slow link), by index.
    lag: Vec<Duration>,
    rng: ChaCha8Rng,
}

impl Net {
    /// Every chunk to and from node `i`'s server takes `latency` longer (`None`: no longer).
    pub fn set_lag(&mut self, i: usize, latency: Option<Duration>) {
        if self.lag.len() <= i {
            self.lag.resize(i + 1, Duration::ZERO);
        }
        self.lag[i] = latency.unwrap_or(Duration::ZERO);
    }

    fn lag_between(&self, from: usize, to: usize) -> Duration {
        let of = |i: usize| self.lag.get(i).copied().unwrap_or(Duration::ZERO);
        of(from) + of(to)
    }
}

/// The network's settings, shared by the runner and every proxy.
#[derive(Clone)]
pub struct Shared {
    net: Arc<Mutex<Net>>,
    closing: Arc<AtomicBool>,
}

impl Shared {
    /// No cuts, the given latency and loss; chunk fates drawn from `seed`.
    pub fn new(latency: DurRange, loss: f64, seed: u64) -> Self {
        Shared {
            net: Arc::new(Mutex::new(Net {
                cuts: Vec::new(),
                latency,
                loss,
                grid: None,
                lag: Vec::new(),
                rng: ChaCha8Rng::seed_from_u64(seed),
            })),
            closing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Changes the network.
    pub fn with<T>(&self, f: impl FnOnce(&mut Net) -> T) -> T {
        f(&mut self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Net> {
        self.net.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every proxy (their threads end within a few ms).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn cut(&self, from: usize, to: usize) -> bool {
        self.lock().cuts.contains(&(from, to))
    }

    /// When a chunk read now on the route from `from` to `to` should be written.
    fn due(&self, from: usize, to: usize) -> Instant {
        let mut g = self.lock();
        if let Some((t0, q)) = g.grid {
            let now = super::procs::true_ns();
            let at = t0 + q.arrival(q.boundary_after(now.saturating_sub(t0)), 0);
            return Instant::now() + Duration::from_nanos(u64::try_from(at.saturating_sub(now)).unwrap_or(0));
        }
        let (lo, hi) = (g.latency.lo.as_nanos() as u64, g.latency.hi.as_nanos() as u64);
        let l = if hi > lo { g.rng.gen_range(lo..=hi) } else { lo };
        let loss = g.loss.clamp(0.0, 1.0);
        let lost = loss > 0.0 && g.rng.gen_bool(loss);
        Instant::now() + Duration::from_nanos(l) + g.lag_between(from, to) + if lost { RTO } else { Duration::ZERO }
    }
}

/// Listens on `listener` and forwards each connection, from node `from`'s server, to node
/// `to`'s cluster port `target`, until the network closes.
pub fn serve(listener: TcpListener, from: usize, to: usize, target: u16, net: Shared) {
    let _ = listener.set_nonblocking(true);
    std::thread::spawn(move || {
        while !net.closing() {
            match listener.accept() {
                Ok((client, _)) => {
                    let _ = client.set_nonblocking(false);
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", target)) {
                        pipe(client, server, from, to, net.clone());
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

/// Both directions of one proxied connection.
fn pipe(a: TcpStream, b: TcpStream, from: usize, to: usize, net: Shared) {
    for (src, dst, dir) in [(a.try_clone(), b.try_clone(), (from, to)), (Ok(b), Ok(a), (to, from))] {
        if let (Ok(src), Ok(dst)) = (src, dst) {
            direction(src, dst, dir, net.clone());
        }
    }
}

/// One direction: a reader stamps each chunk with its due time, a writer delivers chunks in
/// order once due and while the direction is not cut.
fn direction(mut src: TcpStream, mut dst: TcpStream, (from, to): (usize, usize), net: Shared) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader_net = net.clone();
    let _ = src.set_read_timeout(Some(Duration::from_millis(50)));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now();
        while !reader_net.closing() {
            match src.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    // A stream keeps its order: never due before the chunk ahead of it.
                    last = reader_net.due(from, to).max(last);
                    if tx.send((last, buf[..k].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let _ = src.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            loop {
                if net.closing() {
                    let _ = dst.shutdown(Shutdown::Both);
                    return;
                }
                let now = Instant::now();
                if now >= due && !net.cut(from, to) {
                    break;
                }
                std::thread::sleep(
                    (due.saturating_duration_since(now)).clamp(Duration::from_micros(200), Duration::from_millis(5)),
                );
            }
            if dst.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = dst.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk on a lagging node's route is written no sooner than its lag, either way; with
    /// the lag gone the route is as fast as the others' again. (A lower bound on a delay: a
    /// loaded machine can only make it later.)
    #[test]
    fn a_lagging_nodes_routes_hold_each_chunk_by_its_lag_both_ways() {
        let ms = Duration::from_millis;
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = front.local_addr().unwrap();
        let net = Shared::new(DurRange::new(Duration::ZERO, Duration::ZERO), 0.0, 1);
        net.with(|n| n.set_lag(0, Some(ms(150))));
        serve(front, 0, 1, target.local_addr().unwrap().port(), net.clone());
        let mut client = TcpStream::connect(addr).unwrap();
        let (mut server, _) = target.accept().unwrap();
        for s in [&client, &server] {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        let mut byte = [0u8; 1];
        let t = Instant::now();
        client.write_all(b"a").unwrap();
        server.read_exact(&mut byte).unwrap();
        assert!(t.elapsed() >= ms(150), "to it: {:?}", t.elapsed());
        let t = Instant::now();
        server.write_all(b"b").unwrap();
        client.read_exact(&mut byte).unwrap();
        assert!(t.elapsed() >= ms(150), "from it: {:?}", t.elapsed());
        assert_eq!(&byte, b"b");
        net.with(|n| n.set_lag(0, None));
        assert_eq!(net.with(|n| n.lag_between(0, 1)), Duration::ZERO);
        client.write_all(b"c").unwrap();
        server.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"c");
        net.close();
    }
}
