//! `leasehold-sim calibrate`: measures, on this machine, how the real nats-server's routes
//! behave under the runner's cuts, so that the simulator's route model (`[network] route_*`)
//! can be set from numbers rather than guesses.
//!
//! Two servers clustered through the runner's proxies; a raw client publishes a numbered
//! message on the first every 5 ms and a raw client on the second takes them. For each cut
//! length, both directions are cut and healed, and the probe records which messages sent
//! during the cut arrived (held by TCP and delivered late: the route outlived the cut) or were
//! lost (it went stale and was closed), and when a message sent after the heal first arrived
//! (the route usable again). A restart of the second server measures how long a new server
//! takes to form its route (the monitor's `/routez`) and to carry. (`/routez` cannot time a
//! stale close: both servers dial the route, and a new connection is listed before the old
//! one is closed.)

use super::cluster::Cluster;
use super::procs::true_ns;
use crate::scenario::Scenario;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The subject of the probe's messages.
const SUBJECT: &str = "calibrate.probe";
/// How often the publisher sends (ns).
const EVERY: Duration = Duration::from_millis(5);

/// What one cut did.
#[derive(Debug, Clone)]
pub struct CutTrial {
    /// How long both directions were cut.
    pub cut: Duration,
    /// Messages sent during the cut, and how many of them arrived (late).
    pub sent_during: usize,
    /// How many of those arrived.
    pub held_delivered: usize,
    /// From the heal to the send time of the first message sent after it that arrived.
    pub usable_after: Option<Duration>,
}

/// What one restart of the second server did.
#[derive(Debug, Clone)]
pub struct RestartTrial {
    /// From the server's start to both servers listing the route.
    pub route_after: Option<Duration>,
    /// From the server's start to the first message sent after it that arrived there.
    pub usable_after: Option<Duration>,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    /// One entry per cut.
    pub cuts: Vec<CutTrial>,
    /// One entry per restart.
    pub restarts: Vec<RestartTrial>,
    /// Per restart of the second server inside a 7 s cut (1 s in): from the heal to the
    /// first message sent after it that arrived.
    pub restarts_in_cut: Vec<Option<Duration>>,
}

/// Sent and arrived messages of the probe: seq → (sent ns, arrived ns).
#[derive(Default)]
struct Log {
    sent: Vec<u128>,
    arrived: Vec<Option<u128>>,
}

/// Runs the probe: `trials` times each cut length in `cuts`, and `trials` restarts.
pub fn calibrate(nats: PathBuf, cuts: &[Duration], trials: usize) -> Result<Calibration, String> {
    let scn = Scenario::parse("calibrate", "nodes = 2\n").map_err(|e| e.to_string())?;
    let mut c = Cluster::new(&scn, 0, nats, PathBuf::new())?;
    c.start_servers()?;
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = [
        publisher(c.client_port(0), log.clone(), stop.clone()),
        subscriber(c.client_port(1), log.clone(), stop.clone()),
    ];
    let mut out = Calibration::default();
    settle(&c, &log)?;
    for _ in 0..trials {
        for cut in cuts {
            out.cuts.push(cut_trial(&mut c, &log, *cut)?);
            settle(&c, &log)?;
        }
    }
    for _ in 0..trials {
        out.restarts.push(restart_trial(&mut c, &log)?);
        settle(&c, &log)?;
    }
    for _ in 0..trials {
        out.restarts_in_cut.push(restart_in_cut_trial(&mut c, &log)?);
        settle(&c, &log)?;
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    Ok(out)
}

/// Waits until both servers list their route and a fresh message got through.
fn settle(c: &Cluster, log: &Mutex<Log>) -> Result<(), String> {
    let give_up = true_ns() + 30_000_000_000;
    let from = true_ns();
    loop {
        if c.routes(0) == 1 && c.routes(1) == 1 && first_arrival_sent_after(log, from).is_some() {
            std::thread::sleep(Duration::from_millis(300));
            return Ok(());
        }
        if true_ns() > give_up {
            return Err("the two servers did not route to each other within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn cut_trial(c: &mut Cluster, log: &Mutex<Log>, cut: Duration) -> Result<CutTrial, String> {
    let start = true_ns();
    c.net.with(|n| n.cuts = vec![(0, 1), (1, 0)]);
    let heal = start + cut.as_nanos();
    while true_ns() < heal {
        std::thread::sleep(Duration::from_millis(5));
    }
    c.net.with(|n| n.cuts.clear());
    let healed = true_ns();
    // Late copies and the route's return both show within a few seconds.
    std::thread::sleep(Duration::from_secs(4));
    let g = lock(log);
    let during: Vec<usize> = (0..g.sent.len())
        .filter(|k| (start..healed).contains(&g.sent[*k]))
        .collect();
    drop(g);
    let held = {
        let g = lock(log);
        during.iter().filter(|k| g.arrived[**k].is_some()).count()
    };
    Ok(CutTrial {
        cut,
        sent_during: during.len(),
        held_delivered: held,
        usable_after: first_arrival_sent_after(log, healed).map(|t| Duration::from_nanos((t - healed) as u64)),
    })
}

fn restart_trial(c: &mut Cluster, log: &Mutex<Log>) -> Result<RestartTrial, String> {
    c.server_down(1, true)?;
    std::thread::sleep(Duration::from_secs(1));
    let start = true_ns();
    c.server_down(1, false)?;
    let mut route = None;
    let give_up = start + 10_000_000_000;
    while route.is_none() && true_ns() < give_up {
        if c.routes(0) == 1 && c.routes(1) == 1 {
            route = Some(true_ns() - start);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_secs(3));
    Ok(RestartTrial {
        route_after: route.map(|ns| Duration::from_nanos(ns as u64)),
        usable_after: first_arrival_sent_after(log, start).map(|t| Duration::from_nanos((t - start) as u64)),
    })
}

/// The second server restarted 1 s into a 7 s cut: its first dials are made while the route is
/// cut. From the heal to the route carrying.
fn restart_in_cut_trial(c: &mut Cluster, log: &Mutex<Log>) -> Result<Option<Duration>, String> {
    c.net.with(|n| n.cuts = vec![(0, 1), (1, 0)]);
    c.server_down(1, true)?;
    std::thread::sleep(Duration::from_secs(1));
    c.server_down(1, false)?;
    std::thread::sleep(Duration::from_secs(6));
    c.net.with(|n| n.cuts.clear());
    let healed = true_ns();
    std::thread::sleep(Duration::from_secs(4));
    Ok(first_arrival_sent_after(log, healed).map(|t| Duration::from_nanos((t - healed) as u64)))
}

/// The send time of the first message sent at or after `from` that arrived.
fn first_arrival_sent_after(log: &Mutex<Log>, from: u128) -> Option<u128> {
    let g = lock(log);
    (0..g.sent.len())
        .filter(|k| g.sent[*k] >= from && g.arrived[*k].is_some())
        .map(|k| g.sent[k])
        .next()
}

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Publishes message k every [`EVERY`] on the server at `port`, reconnecting if it must.
fn publisher(port: u16, log: Arc<Mutex<Log>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn: Option<std::net::TcpStream> = None;
        while !stop.load(Ordering::SeqCst) {
            if conn.is_none() {
                conn = std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .and_then(|mut s| {
                        s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
                            .ok()?;
                        Some(s)
                    });
            }
            if let Some(s) = conn.as_mut() {
                let k = {
                    let mut g = lock(&log);
                    g.sent.push(true_ns());
                    g.arrived.push(None);
                    g.sent.len() - 1
                };
                let body = k.to_string();
                let msg = format!("PUB {SUBJECT} {}\r\n{body}\r\n", body.len());
                let mut ok = s.write_all(msg.as_bytes()).is_ok();
                // Answers the server's pings (and drops anything else it says).
                let _ = s.set_nonblocking(true);
                let mut buf = [0u8; 4096];
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].windows(4).any(|w| w == b"PING") {
                        ok &= s.write_all(b"PONG\r\n").is_ok();
                    }
                }
                let _ = s.set_nonblocking(false);
                if !ok {
                    conn = None;
                }
            }
            std::thread::sleep(EVERY);
        }
    })
}

/// Takes every probe message on the server at `port`, noting when each arrived; connects
/// again (every 5 ms) while the server is down.
fn subscriber(port: u16, log: Arc<Mutex<Log>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            super::store::serve(port, SUBJECT, &stop, &mut |body| {
                let at = true_ns();
                let k = std::str::from_utf8(body).ok().and_then(|s| s.parse::<usize>().ok());
                let mut g = lock(&log);
                if let Some(slot) = k.and_then(|k| g.arrived.get_mut(k)) {
                    slot.get_or_insert(at);
                }
            });
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

impl Calibration {
    /// The longest cut whose held messages all arrived in every trial, and the shortest whose
    /// were all lost in every trial: the route's stale time lies between (`None`: no such cut).
    pub fn stale_bounds(&self) -> (Option<Duration>, Option<Duration>) {
        let mut lengths: Vec<Duration> = self.cuts.iter().map(|t| t.cut).collect();
        lengths.sort();
        lengths.dedup();
        let every = |len: Duration, f: &dyn Fn(&CutTrial) -> bool| self.cuts.iter().filter(|t| t.cut == len).all(f);
        let held = lengths
            .iter()
            .copied()
            .filter(|l| every(*l, &|t| t.held_delivered == t.sent_during))
            .max();
        let lost = lengths
            .iter()
            .copied()
            .filter(|l| every(*l, &|t| t.held_delivered == 0))
            .min();
        (held, lost)
    }
}

impl std::fmt::Display for Calibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{}ms", d.as_millis()));
        writeln!(f, "cut       sent during  delivered late  lost   usable after heal")?;
        for t in &self.cuts {
            writeln!(
                f,
                "{:<9} {:<12} {:<15} {:<6} {}",
                format!("{}ms", t.cut.as_millis()),
                t.sent_during,
                t.held_delivered,
                t.sent_during - t.held_delivered,
                ms(t.usable_after)
            )?;
        }
        writeln!(f, "\nrestart   route formed after   usable after start")?;
        for t in &self.restarts {
            writeln!(f, "{:<9} {:<20} {}", "", ms(t.route_after), ms(t.usable_after))?;
        }
        let ms2 = |d: &Option<Duration>| ms(*d);
        let in_cut: Vec<String> = self.restarts_in_cut.iter().map(ms2).collect();
        writeln!(
            f,
            "\nrestarted inside a cut, usable after the heal: {}",
            in_cut.join(", ")
        )?;
        let (held, lost) = self.stale_bounds();
        writeln!(
            f,
            "\nheld and delivered late through cuts up to {}; lost in every trial from {} (route_stale lies between)",
            ms(held),
            ms(lost)
        )?;
        let formed: Vec<Duration> = self.restarts.iter().filter_map(|t| t.route_after).collect();
        if let (Some(lo), Some(hi)) = (formed.iter().min(), formed.iter().max()) {
            writeln!(
                f,
                "a restarted server's route formed {}..{} after its start (route_startup)",
                ms(Some(*lo)),
                ms(Some(*hi))
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(ms: u64, sent: usize, held: usize) -> CutTrial {
        CutTrial {
            cut: Duration::from_millis(ms),
            sent_during: sent,
            held_delivered: held,
            usable_after: None,
        }
    }

    #[test]
    fn the_stale_time_lies_between_the_longest_cut_always_held_and_the_shortest_always_lost() {
        let c = Calibration {
            cuts: vec![
                trial(4000, 800, 800),
                trial(4000, 800, 800),
                trial(5000, 1000, 1000),
                trial(5000, 1000, 0),
                trial(6000, 1200, 0),
                trial(6000, 1200, 0),
            ],
            restarts: Vec::new(),
            restarts_in_cut: Vec::new(),
        };
        assert_eq!(
            c.stale_bounds(),
            (Some(Duration::from_millis(4000)), Some(Duration::from_millis(6000)))
        );
    }
}
