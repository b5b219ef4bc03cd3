//! A real cluster on this machine, loopback only: per node one nats-server (clustered with
//! routes that all run through the runner's proxies) and one unchanged `leasehold-agent`, a
//! state file and a clock control file in a temporary directory. Everything is killed and the
//! directory removed when the cluster is dropped, whatever ended the run.

use super::procs::{self, Lines, Proc, Sig};
use super::proxy;
use crate::scenario::Scenario;
use leasehold::{Algorithm, Bug, MembershipCfg};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a stopped agent has to release its lease before its node goes down (as in the
/// simulator).
const STOP_GRACE: Duration = crate::oracle::conduct::STOP_BOUND;

/// One node's processes and files.
struct Node {
    id: String,
    cfg: MembershipCfg,
    client_port: u16,
    monitor_port: u16,
    server: Option<Proc>,
    agent: Option<Proc>,
    /// Second agents started with this node's identity (`clone`); they die with the node.
    clones: Vec<Proc>,
    inc: u64,
    ppm: i64,
    wall_offset_ns: i128,
    /// Every save its agents made, exactly as written, in order (what a rollback restores).
    saves: Vec<Vec<u8>>,
}

/// The cluster of one real run.
pub struct Cluster {
    dir: PathBuf,
    nats: PathBuf,
    agent: PathBuf,
    nodes: Vec<Node>,
    /// The network between the servers.
    pub net: proxy::Shared,
    /// Every line the agents printed.
    pub lines: Lines,
    /// The fenced store's subject, when the agents write to one.
    fenced: Option<String>,
    /// The run's seed (each agent's random draws derive from it, as in the simulator).
    seed: u64,
    /// How many of `lines` were looked at for saves.
    seen: usize,
}

impl Cluster {
    /// Creates the directory, ports, proxies and server configurations of `scn` (nothing runs
    /// yet); `seed` draws the proxies' latencies.
    pub fn new(scn: &Scenario, seed: u64, nats: PathBuf, agent: PathBuf) -> Result<Self, String> {
        let nodes = scn.sim_nodes();
        let n = nodes.len();
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("leasehold-real-{}-{run}-seed{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut c = Cluster {
            dir,
            nats,
            agent,
            nodes: Vec::new(),
            net: proxy::Shared::new(scn.network.latency, scn.network.loss, seed),
            lines: Default::default(),
            fenced: scn
                .workload
                .fenced_store
                .then(|| crate::workload::store::subject(&scn.membership_cfg().election_prefix())),
            seed,
            seen: 0,
        };
        // Ports: client, cluster and monitor per node, and one nobody listens on (every
        // server advertises it, so a route learnt by gossip never bypasses the proxies).
        // Held until the proxies are bound, so that none of them takes a server's port.
        let reserved = procs::reserve_ports(3 * n + 1)?;
        let ports: Vec<u16> = reserved.iter().map(|(p, _)| *p).collect();
        let blackhole = ports[3 * n];
        let mut routes: Vec<Vec<u16>> = vec![Vec::new(); n];
        for (i, r) in routes.iter_mut().enumerate() {
            for j in (0..n).filter(|j| *j != i) {
                let l = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("no port for a proxy: {e}"))?;
                r.push(l.local_addr().map_err(|e| e.to_string())?.port());
                proxy::serve(l, i, j, ports[3 * j + 1], c.net.clone());
            }
        }
        drop(reserved);
        for (i, node) in nodes.iter().enumerate() {
            let conf = format!(
                "server_name: \"{id}\"\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{mon}\"\nping_interval: \"1s\"\nping_max: 3\n\
                 cluster {{\n  name: \"leasehold\"\n  listen: \"127.0.0.1:{cluster}\"\n  advertise: \"127.0.0.1:{blackhole}\"\n  no_advertise: true\n  routes: [{routes}]\n}}\n",
                id = node.id,
                client = ports[3 * i],
                cluster = ports[3 * i + 1],
                mon = ports[3 * i + 2],
                routes = routes[i]
                    .iter()
                    .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let path = c.dir.join(format!("{}.conf", node.id));
            std::fs::write(&path, conf).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            if scn.membership.authenticate {
                let keys = c.dir.join("cluster.keys");
                std::fs::write(&keys, crate::forger::sim_key_file(seed))
                    .map_err(|e| format!("cannot write {}: {e}", keys.display()))?;
            }
            let mut cfg = scn.node_cfg(i);
            cfg.id = node.id.clone();
            cfg.my_rank = node.rank;
            c.nodes.push(Node {
                id: node.id.clone(),
                cfg,
                client_port: ports[3 * i],
                monitor_port: ports[3 * i + 2],
                server: None,
                agent: None,
                clones: Vec::new(),
                inc: 0,
                ppm: 0,
                wall_offset_ns: 0,
                saves: Vec::new(),
            });
        }
        Ok(c)
    }

    fn file(&self, i: usize, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.nodes[i].id))
    }

    /// Starts every server and waits until each has a route to every other.
    pub fn start_servers(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            self.start_server(i)?;
        }
        let n = self.nodes.len();
        let end = std::time::Instant::now() + Duration::from_secs(15);
        for node in &self.nodes {
            while routes_of(node.monitor_port) < n - 1 {
                if std::time::Instant::now() > end {
                    return Err(format!(
                        "nats-server {} has {} of {} routes after 15 s (see {})",
                        node.id,
                        routes_of(node.monitor_port),
                        n - 1,
                        self.dir.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn start_server(&mut self, i: usize) -> Result<(), String> {
        let (conf, log) = (self.file(i, "conf"), self.file(i, "nats.log"));
        let p = procs::start_server(&self.nats, &conf, &log)?;
        self.nodes[i].server = Some(p);
        if !procs::wait_for_port(self.nodes[i].client_port, Duration::from_secs(10)) {
            return Err(format!(
                "nats-server {} did not listen on 127.0.0.1:{} (log: {}, ending:\n{})",
                self.nodes[i].id,
                self.nodes[i].client_port,
                log.display(),
                procs::log_tail(&log, 5)
            ));
        }
        Ok(())
    }

    /// Sets node `i`'s initial clock: rate error and wall offset.
    pub fn set_clock(&mut self, i: usize, ppm: i64, wall_offset_ns: i128) {
        self.nodes[i].ppm = ppm;
        self.nodes[i].wall_offset_ns = wall_offset_ns;
    }

    /// Starts node `i`'s agent (a new incarnation); `new_cluster` only for the first start.
    pub fn start_agent(&mut self, i: usize, new_cluster: bool) -> Result<(), String> {
        let inc = self.nodes[i].inc + 1;
        let p = self.spawn_agent(i, inc, "", new_cluster)?;
        let node = &mut self.nodes[i];
        node.agent = Some(p);
        node.inc = inc;
        Ok(())
    }

    /// Starts a second agent with node `i`'s identity, on a copy of its state file and beside
    /// the first, connected to the same server (two processes with one ID, as
    /// a restored volume or a duplicated pod makes). Its lines count as incarnation
    /// 2^40 + k (the simulator's `CLONE_INC` + k), as the simulator's clone's do.
    pub fn clone_agent(&mut self, i: usize) -> Result<(), String> {
        let k = self.nodes[i].clones.len();
        let files = format!("clone{k}.");
        let (from, to) = (self.file(i, "state.json"), self.file(i, &format!("{files}state.json")));
        // The file as the running agent started from it, as the simulator's clone has it: its
        // incarnation the one before the running agent's, the rest as last saved.
        if let Ok(bytes) = std::fs::read(&from) {
            let copy = match leasehold::wire::decode::<leasehold::Durable>(&bytes, bytes.len()) {
                Ok(mut d) => {
                    d.incarnation = d.incarnation.saturating_sub(1);
                    leasehold::wire::encode(&d).to_vec()
                }
                Err(_) => bytes,
            };
            std::fs::write(&to, copy).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        }
        let p = self.spawn_agent(i, crate::world::CLONE_INC + k as u64, &files, false)?;
        self.nodes[i].clones.push(p);
        Ok(())
    }

    /// Makes node `i`'s state file unreadable (cut short in the middle of its text).
    pub fn corrupt(&mut self, i: usize) {
        let path = self.file(i, "state.json");
        let bytes = std::fs::read(&path).unwrap_or_default();
        let _ = std::fs::write(&path, &bytes[..bytes.len() / 2]);
    }

    /// Starts an agent process for node `i` as incarnation `inc`, its state and clock files
    /// named with the prefix `files` (empty for the node's own agent).
    fn spawn_agent(&mut self, i: usize, inc: u64, files: &str, new_cluster: bool) -> Result<Proc, String> {
        let clock = self.file(i, &format!("{files}clock"));
        let node = &self.nodes[i];
        // A new process reads its clock from the start of a fresh file.
        std::fs::write(&clock, format!("ppm {}\nwall {}\n", node.ppm, node.wall_offset_ns))
            .map_err(|e| format!("cannot write {}: {e}", clock.display()))?;
        let state = self.file(i, &format!("{files}state.json"));
        let mut args = agent_args(node, &state, &clock, new_cluster);
        // The applications whose guards the oracle judges, as in the simulator.
        args.push("--test-guard".into());
        // Every save reported as written, for rollbacks.
        args.push("--test-report-saves".into());
        if let Some(subject) = &self.fenced {
            args.push(format!("--test-fenced-writes={subject}"));
        }
        let keys = self.dir.join("cluster.keys");
        if keys.is_file() {
            args.push(format!("--cluster-key={}", keys.display()));
        }
        // Its random draws as the simulator's in the same seed.
        args.push(format!("--test-seed={}", crate::seeds::agent_seed(self.seed, i, inc)));
        procs::start_agent(&self.agent, &args, i, inc, &self.lines)
    }

    /// The client port of node `i`'s server.
    pub fn client_port(&self, i: usize) -> u16 {
        self.nodes[i].client_port
    }

    /// How many routes node `i`'s server lists (0 if it does not answer).
    pub fn routes(&self, i: usize) -> usize {
        routes_of(self.nodes[i].monitor_port)
    }

    /// Whether node `i`'s agent process has exited (it was started and is gone).
    pub fn agent_exited(&mut self, i: usize) -> bool {
        self.nodes[i].agent.as_mut().is_some_and(|a| a.exited())
    }

    /// Whether node `i`'s processes run.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].server.is_some()
    }

    /// Kills node `i`: agent and server, at once (memory lost; its state file stays).
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.agent = None;
        node.clones.clear();
        node.server = None;
    }

    /// Sets node `i`'s `--cluster-size` for its next starts (its configuration edited).
    pub fn resize(&mut self, i: usize, size: usize) {
        self.nodes[i].cfg.cluster_size = size;
    }

    /// Starts a down node again: its server, then a new incarnation of its agent.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.start_server(i)?;
        self.start_agent(i, false)
    }

    /// Stops node `i`'s agent gracefully (SIGTERM: a leader releases its lease), then takes
    /// the node down.
    pub fn stop(&mut self, i: usize) -> bool {
        let stopped = match self.nodes[i].agent.as_mut() {
            Some(a) => {
                a.signal(Sig::Term);
                a.wait_for(STOP_GRACE)
            }
            None => true,
        };
        self.kill(i);
        stopped
    }

    /// Stops (`true`) or starts again node `i`'s nats-server alone; its agent runs on and
    /// reconnects by itself.
    pub fn server_down(&mut self, i: usize, down: bool) -> Result<(), String> {
        if down {
            self.nodes[i].server = None;
            Ok(())
        } else if self.nodes[i].server.is_none() {
            self.start_server(i)
        } else {
            Ok(())
        }
    }

    /// Stops (`true`, SIGSTOP) or continues node `i`'s nats-server alone: its agent's
    /// connection freezes (nothing arrives, nothing fails) until its pings time out.
    pub fn freeze_server(&mut self, i: usize, frozen: bool) {
        if let Some(s) = &self.nodes[i].server {
            s.signal(if frozen { Sig::Stop } else { Sig::Cont });
        }
    }

    /// Asks node `i`'s agent to resign (`true`, SIGUSR1) or to campaign again (SIGUSR2).
    pub fn steer(&mut self, i: usize, resign: bool) {
        if let Some(a) = &self.nodes[i].agent {
            a.signal(if resign { Sig::Usr1 } else { Sig::Usr2 });
        }
    }

    /// Pauses (`true`) or continues node `i`'s processes; its clocks keep running.
    pub fn pause(&mut self, i: usize, pause: bool) {
        let sig = if pause { Sig::Stop } else { Sig::Cont };
        let node = &self.nodes[i];
        for p in [&node.agent, &node.server].into_iter().flatten().chain(&node.clones) {
            p.signal(sig);
        }
    }

    /// Appends a change to node `i`'s clock control file (the agent applies it within 10 ms
    /// and says exactly when).
    fn clock_change(&mut self, i: usize, line: String) {
        use std::io::Write;
        let path = self.file(i, "clock");
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// Sets node `i`'s clock rate error.
    pub fn drift(&mut self, i: usize, ppm: i64) {
        self.nodes[i].ppm = ppm;
        self.clock_change(i, format!("ppm {ppm}\n"));
    }

    /// Steps node `i`'s wall clock.
    pub fn step_wall(&mut self, i: usize, by_ns: i128) {
        self.nodes[i].wall_offset_ns += by_ns;
        let w = self.nodes[i].wall_offset_ns;
        self.clock_change(i, format!("wall {w}\n"));
    }

    /// Takes the saves the agents reported since last time (each agent prints every state it
    /// saves, exactly as written: `--test-report-saves`).
    pub fn watch_state(&mut self) {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        // A clone saves to a file of its own, as the simulator's clone to a disk of its own.
        let own = |l: &&procs::Line| l.event && l.inc < crate::world::CLONE_INC;
        for l in lines.iter().skip(self.seen).filter(own) {
            if !l.text.starts_with("{\"test_saved\"") {
                continue;
            }
            let saved = serde_json::from_str::<serde_json::Value>(&l.text)
                .ok()
                .and_then(|v| v["test_saved"].as_str().map(|t| t.as_bytes().to_vec()));
            if let (Some(bytes), Some(node)) = (saved, self.nodes.get_mut(l.node)) {
                node.saves.push(bytes);
            }
        }
        self.seen = lines.len();
    }

    /// How many saves node `i`'s agents made so far (as the simulator counts them).
    pub fn saves(&self, i: usize) -> usize {
        self.nodes[i].saves.len()
    }

    /// Deletes node `i`'s state file.
    pub fn wipe(&mut self, i: usize) {
        let _ = std::fs::remove_file(self.file(i, "state.json"));
    }

    /// Restores node `i`'s state file to save number `to` (deleted if there is none).
    pub fn rollback(&mut self, i: usize, to: usize) {
        self.watch_state();
        match self.nodes[i].saves.get(to).cloned() {
            Some(bytes) => {
                let _ = std::fs::write(self.file(i, "state.json"), bytes);
            }
            None => self.wipe(i),
        }
    }

    /// Publishes `payload` on `subject` through node `from`'s server as a stranger would
    /// (a raw NATS client); whether it was sent.
    pub fn inject(&self, from: usize, subject: &str, reply: Option<&str>, payload: &[u8]) -> bool {
        use std::io::Write;
        let Some(node) = self.nodes.get(from).filter(|n| n.server.is_some()) else {
            return false;
        };
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", node.client_port)) else {
            return false;
        };
        let head = match reply {
            Some(r) => format!("PUB {subject} {r} {}\r\n", payload.len()),
            None => format!("PUB {subject} {}\r\n", payload.len()),
        };
        let mut msg = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n".to_vec();
        msg.extend_from_slice(head.as_bytes());
        msg.extend_from_slice(payload);
        msg.extend_from_slice(b"\r\nPING\r\n");
        let sent = s.write_all(&msg).is_ok();
        // Wait for the server's answer to PING, so the message is in before we hang up.
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 512];
        let _ = std::io::Read::read(&mut s, &mut buf);
        sent
    }

    /// The run directory (server logs and configurations live there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.net.close();
        for node in &mut self.nodes {
            node.agent = None;
            node.clones.clear();
            node.server = None;
        }
        if std::env::var_os("LEASEHOLD_REAL_KEEP").is_some() {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The unchanged agent's command line for `node`.
fn agent_args(node: &Node, state: &Path, clock: &Path, new_cluster: bool) -> Vec<String> {
    let cfg = &node.cfg;
    let d = |d: Duration| format!("{}ms", d.as_millis());
    let mut a = vec![
        format!("--nats=nats://127.0.0.1:{}", node.client_port),
        format!("--id={}", node.id),
        format!("--rank={}", cfg.my_rank),
        format!("--algorithm={}", cfg.algorithm),
        format!("--beat={}", d(cfg.beat)),
        format!("--lease={}", d(cfg.lease_time)),
        format!("--max-clock-skew={}", d(cfg.max_clock_skew)),
        format!("--max-drift-ppm={}", cfg.max_drift_ppm),
        format!("--prefix={}", cfg.sys_member_prefix),
        format!("--state={}", state.display()),
        format!("--test-clock={}", clock.display()),
        format!(
            "--initial-cluster-state={}",
            if new_cluster { "new" } else { "existing" }
        ),
    ];
    if cfg.algorithm == Algorithm::Lease || cfg.cluster_size > 0 {
        a.push(format!("--cluster-size={}", cfg.cluster_size));
    }
    if let Some(f) = cfg.state_loss_tolerance {
        a.push(format!("--state-loss-tolerance={f}"));
    }
    for b in Bug::ALL.into_iter().filter(|b| cfg.bug_knobs.has(*b)) {
        a.push(format!("--plant-bug={}", b.name()));
    }
    a
}

/// How many routes the server with this monitoring port has (0 if it does not answer).
fn routes_of(monitor_port: u16) -> usize {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", monitor_port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /routez HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return 0;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.split("\"num_routes\":")
        .nth(1)
        .and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}
