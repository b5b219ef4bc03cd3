//! Helpers shared by the tests against real `nats-server` processes: finding and starting
//! servers (from flags or a configuration file), starting agents and reading their JSON lines,
//! and checking what they reported.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) const LEASE_MS: u64 = 1000;
pub(crate) const SKEW_MS: u64 = 500;
pub(crate) const BEAT_MS: u64 = 100;
/// The agents' default subject prefix.
pub(crate) const PREFIX: &str = "_nats.cluster.members.";

pub(crate) fn nats_server_bin() -> PathBuf {
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
/// Below Linux's ephemeral range (32768 and up), so that no outgoing connection takes it
/// while its server is down.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let base = 20_000 + (std::process::id() % 300) as u16 * 40;
        let port = base + NEXT.fetch_add(1, Ordering::SeqCst) % 40;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub(crate) fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) args: Vec<String>,
}

impl Server {
    pub(crate) fn start(port: u16, cluster: Option<(u16, Vec<u16>)>) -> Server {
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

    pub(crate) fn spawn(args: &[String], port: u16) -> Child {
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

    /// A server on 127.0.0.1:`port` with `conf` (nats-server's configuration syntax) added
    /// after its `listen` line: accounts, permissions, TLS.
    pub(crate) fn with_config(port: u16, conf: &str) -> Server {
        let file = std::env::temp_dir().join(format!("leasehold-it-{}-{port}.conf", std::process::id()));
        std::fs::write(&file, format!("listen: \"127.0.0.1:{port}\"\n{conf}\n")).unwrap();
        let args = vec!["-c".to_string(), file.display().to_string()];
        let child = Self::spawn(&args, port);
        Server { child, port, args }
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.args, self.port);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) struct Agent {
    pub(crate) id: String,
    /// The flags of every start of this agent.
    pub(crate) args: Vec<String>,
    pub(crate) rust_log: String,
    pub(crate) child: Child,
    /// Stdout's JSON lines, and stderr, of every run in turn.
    pub(crate) lines: Arc<Mutex<Vec<Value>>>,
    pub(crate) stderr: Arc<Mutex<String>>,
    pub(crate) dir: PathBuf,
}

impl Agent {
    pub(crate) fn start(id: &str, rank: i64, url: &str, n: usize, algorithm: &str) -> Agent {
        Agent::start_with(id, rank, url, n, algorithm, LEASE_MS, "warn")
    }

    /// The first start of a member of a brand-new cluster, so with `--initial-cluster-state
    /// new`; `rust_log` filters its stderr.
    pub(crate) fn start_with(
        id: &str,
        rank: i64,
        url: &str,
        n: usize,
        algorithm: &str,
        lease_ms: u64,
        rust_log: &str,
    ) -> Agent {
        Agent::launch(id, rank, url, n, (algorithm, lease_ms, rust_log), &[])
    }

    /// [`Agent::start`] (a `lease` agent) with more flags: credentials, keys, TLS.
    pub(crate) fn start_extra(id: &str, rank: i64, url: &str, n: usize, extra: &[String]) -> Agent {
        Agent::launch(id, rank, url, n, ("lease", LEASE_MS, "warn"), extra)
    }

    /// Waits up to `within` for the agent to exit; its exit code.
    pub(crate) fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A `lease` agent started as production restarts one: without `--initial-cluster-state
    /// new`, so a start without a state file waits to learn the highest token.
    pub(crate) fn start_existing(id: &str, rank: i64, url: &str, n: usize, lease_ms: u64) -> Agent {
        Agent::launch_as(id, rank, url, n, ("lease", lease_ms, "warn"), &[], &[])
    }

    /// [`Agent::start_existing`] with more flags.
    pub(crate) fn start_existing_extra(id: &str, rank: i64, url: &str, n: usize, extra: &[String]) -> Agent {
        Agent::launch_as(id, rank, url, n, ("lease", LEASE_MS, "warn"), extra, &[])
    }

    /// Starts an agent; `how` is (algorithm, lease in ms, RUST_LOG), `extra` more flags.
    fn launch(id: &str, rank: i64, url: &str, n: usize, how: (&str, u64, &str), extra: &[String]) -> Agent {
        Agent::launch_as(id, rank, url, n, how, extra, &["--initial-cluster-state", "new"])
    }

    /// [`Agent::launch`] with `first`, the flags of the first start only.
    fn launch_as(
        id: &str,
        rank: i64,
        url: &str,
        n: usize,
        how: (&str, u64, &str),
        extra: &[String],
        first: &[&str],
    ) -> Agent {
        let (algorithm, lease_ms, rust_log) = how;
        // A counter, not the time: two tests of this process may start an `n0` in the same
        // microsecond, and one's cleanup would delete the other's state directory.
        static NEXT_DIR: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("leasehold-it-{}-{seq}-{id}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = [
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
            "--lease",
            &format!("{lease_ms}ms"),
            "--beat",
            &format!("{BEAT_MS}ms"),
            "--max-clock-skew",
            &format!("{SKEW_MS}ms"),
            "--state",
            dir.join("state.json").to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().cloned());
        let (lines, stderr) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(String::new())));
        let child = Self::spawn(&args, first, rust_log, &lines, &stderr);
        Agent {
            id: id.into(),
            args,
            rust_log: rust_log.into(),
            child,
            lines,
            stderr,
            dir,
        }
    }

    pub(crate) fn spawn(
        args: &[String],
        extra: &[&str],
        rust_log: &str,
        lines: &Arc<Mutex<Vec<Value>>>,
        stderr: &Arc<Mutex<String>>,
    ) -> Child {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leasehold-agent"))
            .args(args)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("leasehold-agent starts");
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
        let (err, e) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut e = e.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        });
        child
    }

    /// Starts the agent again after a kill, as production would: with the default
    /// `--initial-cluster-state existing`.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(&self.args, &[], &self.rust_log, &self.lines, &self.stderr);
    }

    pub(crate) fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub(crate) fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Its stderr once it satisfies `f`: waits, since another thread reads it (a line said
    /// before a stdout line may be read after it). A time-out shows what it said.
    pub(crate) fn said(&self, what: &str, within: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let err = self.stderr();
            if f(&err) {
                return err;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {} to say {what}; its stderr:\n{err}",
                self.id
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `event` lines printed at or after wall time `t`.
    pub(crate) fn events_since(&self, event: &str, t: u128) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v["event"] == event && v["at_unix_us"].as_u64().unwrap() as u128 >= t)
            .collect()
    }

    /// The lease this agent holds at wall time `t`, by its own report.
    pub(crate) fn holds_at(&self, t: u128) -> Option<u64> {
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

    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn terminate(&mut self) {
        if !self.running() {
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
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
pub(crate) fn holders(agents: &[Agent]) -> Vec<(usize, u64)> {
    let t = now_us();
    agents
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.holds_at(t).map(|tok| (i, tok)))
        .collect()
}

/// No two agents' reported leases with different tokens overlap.
pub(crate) fn assert_no_overlap(agents: &[Agent]) {
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

/// A lease line's start (the moment the agent took or renewed the lease), in Unix µs.
pub(crate) fn lease_from(v: &Value) -> u128 {
    v["lease_from_unix_us"].as_u64().unwrap() as u128
}

pub(crate) fn sleep_until_us(t: u128) {
    let now = now_us();
    if t > now {
        std::thread::sleep(Duration::from_micros((t - now) as u64));
    }
}
