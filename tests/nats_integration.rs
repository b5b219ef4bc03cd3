//! Against real `nats-server` processes on free loopback ports, with real `leasehold-agent`
//! processes: one leader; failover after the leader is killed; a server restart survived; a
//! three-server cluster losing one server; and `allcall` on hnatsd's wire protocol. Every
//! test ends by checking that no two agents ever reported overlapping leases with different
//! fencing tokens (all on this host's wall clock).
//!
//! `ci/test.sh` installs nats-server; without it these tests fail, saying so.
#![cfg(feature = "nats")]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LEASE_MS: u64 = 1000;
const SKEW_MS: u64 = 500;
const BEAT_MS: u64 = 100;

fn nats_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .collect::<Vec<_>>();
    candidates.into_iter().find(|p| p.exists()).unwrap_or_else(|| {
        panic!("nats-server not found on PATH or at /usr/sbin/nats-server: install it (ci/test.sh runs `apt-get install nats-server`) or set NATS_SERVER_BIN")
    })
}

/// A port no other test of this process uses (a counter, not the OS's ephemeral pick: a
/// restarted server must get its port back while its neighbours run), checked free now.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let base = 20_000 + (std::process::id() % 500) as u16 * 40;
        let port = base + NEXT.fetch_add(1, Ordering::SeqCst) % 40;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

struct Server {
    child: Child,
    port: u16,
    args: Vec<String>,
}

impl Server {
    fn start(port: u16, cluster: Option<(u16, Vec<u16>)>) -> Server {
        let mut args = vec!["-a".to_string(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        if let Some((cport, routes)) = cluster {
            args.extend([
                "--cluster".into(),
                format!("nats://127.0.0.1:{cport}"),
                "--cluster_name".into(),
                "leasehold".into(),
            ]);
            let r: Vec<String> = routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
            args.extend(["--routes".into(), r.join(",")]);
        }
        let child = Self::spawn(&args, port);
        Server { child, port, args }
    }

    fn spawn(args: &[String], port: u16) -> Child {
        let mut child = Command::new(nats_server_bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server on port {port} did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "our nats-server on port {port} exited (port taken?)"
        );
        child
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.args, self.port);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Agent {
    id: String,
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    _dir: PathBuf,
}

impl Agent {
    fn start(id: &str, rank: i64, url: &str, n: usize, algorithm: &str) -> Agent {
        let dir = std::env::temp_dir().join(format!("leasehold-it-{}-{id}-{}", std::process::id(), now_us()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_leasehold-agent"))
            .args([
                "--nats",
                url,
                "--id",
                id,
                "--rank",
                &rank.to_string(),
                "--cluster-size",
                &n.to_string(),
                "--algorithm",
                algorithm,
            ])
            .args([
                "--lease",
                &format!("{LEASE_MS}ms"),
                "--beat",
                &format!("{BEAT_MS}ms"),
                "--max-clock-skew",
                &format!("{SKEW_MS}ms"),
            ])
            .arg("--state")
            .arg(dir.join("state.json"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("leasehold-agent starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (out, l) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(
                    v["event"].is_string() && v["node"].is_string(),
                    "every line has event and node: {line}"
                );
                l.lock().unwrap().push(v);
            }
        });
        Agent {
            id: id.into(),
            child,
            lines,
            _dir: dir,
        }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The lease this agent holds at wall time `t`, by its own report.
    fn holds_at(&self, t: u128) -> Option<u64> {
        let lines = self.lines();
        let released = lines
            .iter()
            .filter(|v| v["event"] == "lease_released")
            .filter_map(|v| v["lease_until_unix_us"].as_u64())
            .map(u128::from)
            .max()
            .unwrap_or(0);
        lines
            .iter()
            .filter(|v| v["event"] == "lease_renewed")
            .filter(|v| {
                let (from, until) = (
                    v["lease_from_unix_us"].as_u64().unwrap() as u128,
                    v["lease_until_unix_us"].as_u64().unwrap() as u128,
                );
                from <= t && t < until && !(released >= from && t >= released)
            })
            .filter_map(|v| v["fencing_token"].as_u64())
            .next_back()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return; // already gone
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The agents holding a lease now.
fn holders(agents: &[Agent]) -> Vec<(usize, u64)> {
    let t = now_us();
    agents
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.holds_at(t).map(|tok| (i, tok)))
        .collect()
}

/// No two agents' reported leases with different tokens overlap.
fn assert_no_overlap(agents: &[Agent]) {
    let mut leases = Vec::new();
    for a in agents {
        let lines = a.lines();
        let released: Vec<u128> = lines
            .iter()
            .filter(|v| v["event"] == "lease_released")
            .filter_map(|v| v["lease_until_unix_us"].as_u64())
            .map(u128::from)
            .collect();
        for v in lines.iter().filter(|v| v["event"] == "lease_renewed") {
            let from = v["lease_from_unix_us"].as_u64().unwrap() as u128;
            let mut until = v["lease_until_unix_us"].as_u64().unwrap() as u128;
            if let Some(r) = released.iter().find(|r| **r >= from) {
                until = until.min(*r);
            }
            leases.push((a.id.clone(), v["fencing_token"].as_u64().unwrap(), from, until));
        }
    }
    for (i, a) in leases.iter().enumerate() {
        for b in &leases[i + 1..] {
            if a.1 != b.1 {
                assert!(
                    a.3 <= b.2 || b.3 <= a.2,
                    "overlapping leases with different tokens: {a:?} and {b:?}"
                );
            }
        }
    }
}

fn bound() -> Duration {
    Duration::from_millis(LEASE_MS + SKEW_MS + 3 * BEAT_MS)
}

#[test]
fn one_leader_emerges_and_a_killed_leader_is_replaced_within_the_bound() {
    let server = Server::start(free_port(), None);
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start(&format!("n{i}"), i, &server.url(), 3, "lease"))
        .collect();
    let (leader, token) = wait_for("a leader", Duration::from_secs(10), || {
        holders(&agents).first().copied()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(holders(&agents).len(), 1, "exactly one leader");
    assert_eq!(leader, 0, "the best-ranked agent leads");
    let others: Vec<Value> = agents[1]
        .lines()
        .into_iter()
        .filter(|v| v["event"] == "leadership")
        .collect();
    assert_eq!(others.last().unwrap()["leader"], "n0");

    let killed_at = Instant::now();
    agents[leader].kill();
    let (next, next_token) = wait_for("a new leader", bound() + Duration::from_secs(2), || {
        holders(&agents).into_iter().find(|(i, _)| *i != leader)
    });
    let took = killed_at.elapsed();
    assert!(took <= bound(), "failover took {took:?}, bound {:?}", bound());
    assert!(next_token > token, "the fencing token grew ({token} -> {next_token})");
    assert_eq!(next, 1, "the next-best agent took over");
    assert_no_overlap(&agents);
    for a in &mut agents {
        a.terminate();
    }
    assert_no_overlap(&agents);
}

#[test]
fn a_restarted_nats_server_is_survived() {
    let mut server = Server::start(free_port(), None);
    let agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start(&format!("n{i}"), i, &server.url(), 3, "lease"))
        .collect();
    wait_for("a leader", Duration::from_secs(10), || {
        holders(&agents).first().copied()
    });
    server.stop();
    std::thread::sleep(Duration::from_millis(LEASE_MS + 500));
    assert!(holders(&agents).is_empty(), "nobody keeps a lease it cannot renew");
    let restarted = now_us();
    server.restart();
    wait_for("a leader after the restart", Duration::from_secs(15), || {
        agents.iter().find_map(|a| {
            a.lines()
                .iter()
                .any(|v| v["event"] == "lease_renewed" && v["lease_from_unix_us"].as_u64().unwrap() as u128 > restarted)
                .then_some(())
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(holders(&agents).len(), 1);
    assert_no_overlap(&agents);
}

#[test]
fn stopping_one_server_of_a_cluster_leaves_the_majority_with_one_leader() {
    let (ports, cports): (Vec<u16>, Vec<u16>) = (0..3).map(|_| (free_port(), free_port())).unzip();
    let mut servers: Vec<Server> = (0..3)
        .map(|i| {
            Server::start(
                ports[i],
                Some((cports[i], (0..3).filter(|j| *j != i).map(|j| cports[j]).collect())),
            )
        })
        .collect();
    let agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start(&format!("n{i}"), i as i64, &servers[i].url(), 3, "lease"))
        .collect();
    // Routes are up once every agent has heard from the two others.
    wait_for("the cluster to form", Duration::from_secs(15), || {
        agents
            .iter()
            .all(|a| a.lines().iter().filter(|v| v["event"] == "member_added").count() >= 2)
            .then_some(())
    });
    let (leader, _) = wait_for("a leader", Duration::from_secs(10), || {
        holders(&agents).first().copied()
    });
    let stopped_at = Instant::now();
    servers[leader].stop();
    let (next, _) = wait_for(
        "a leader on the majority side",
        bound() + Duration::from_secs(3),
        || holders(&agents).into_iter().find(|(i, _)| *i != leader),
    );
    assert!(
        stopped_at.elapsed() <= bound() + Duration::from_millis(2 * BEAT_MS),
        "took {:?}",
        stopped_at.elapsed()
    );
    std::thread::sleep(Duration::from_millis(LEASE_MS));
    let now: Vec<usize> = holders(&agents).into_iter().map(|(i, _)| i).collect();
    assert_eq!(now, vec![next], "exactly one leader, on the majority side");
    assert_no_overlap(&agents);
}

#[test]
fn allcall_speaks_the_hnatsd_wire_protocol_and_agrees_with_an_hnatsd_agent() {
    let server = Server::start(free_port(), None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures::StreamExt;
        let client = async_nats::connect(server.url()).await.unwrap();
        let mut all = client.subscribe("_nats.cluster.members.>").await.unwrap();
        let mut calls = client.subscribe("_nats.cluster.members.allcall").await.unwrap();
        client.flush().await.unwrap();
        let agents: Vec<Agent> = (0..2).map(|i| Agent::start(&format!("rs{i}"), i + 1, &server.url(), 0, "allcall")).collect();

        // A peer written to hnatsd's protocol: it answers every allcall with its location in
        // Go's JSON (rank 0, better than ours), on the allcall's reply subject.
        let go_loc = r#"{"serverId":"go-agent","natsHost":"127.0.0.1","natsClientPort":4222,"grpc":{"externalHostPort":{"host":"","port":0},"internalHostPort":{"host":"","port":0}},"leaseExpires":"0001-01-01T00:00:00Z","rank":0,"pid":4242}"#;
        let responder = client.clone();
        let answering = tokio::spawn(async move {
            while let Some(m) = calls.next().await {
                if let Some(reply) = m.reply {
                    let _ = responder.publish(reply, go_loc.into()).await;
                }
            }
        });

        let mut seen = std::collections::BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, all.next()).await {
            let kind = m.subject.as_str().trim_start_matches("_nats.cluster.members.").to_string();
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            match kind.as_str() {
                "allcall" => {
                    assert_eq!(m.reply.as_deref(), Some("_nats.cluster.members.allreply"), "allcall asks for replies on allreply");
                    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
                    assert_eq!(keys, ["grpc", "leaseExpires", "natsClientPort", "natsHost", "pid", "rank", "serverId"], "hnatsd's AgentLoc");
                }
                "allreply" => assert!(v["serverId"].is_string() && v["leaseExpires"].is_string()),
                "list" | "added" | "lost" => assert!(v["LeadID"].is_string() && v["Members"].is_array(), "{v}"),
                other => panic!("unexpected subject {other}"),
            }
            seen.insert(kind);
            if seen.len() >= 4 && agents.iter().all(|a| a.lines().iter().any(|l| l["event"] == "leadership" && l["leader"] == "go-agent")) {
                break;
            }
        }
        for k in ["allcall", "allreply", "list", "added"] {
            assert!(seen.contains(k), "saw {k}: {seen:?}");
        }
        for a in &agents {
            let last = a.lines().into_iter().rfind(|l| l["event"] == "leadership").expect("a leadership line");
            assert_eq!(last["leader"], "go-agent", "{}: our agents follow the hnatsd agent's better rank", a.id);
            assert_eq!(last["is_leader"], false);
        }
        answering.abort();
    });
}
