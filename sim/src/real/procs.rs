//! The processes of a real run: one nats-server and one unchanged `leasehold-agent` per node,
//! started, signalled and always reaped. Every line an agent prints is stamped with the
//! host's `CLOCK_MONOTONIC` (true time) as it arrives.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The host's `CLOCK_MONOTONIC` in ns: true time for the runner and every agent.
pub fn true_ns() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

/// One line an agent printed: which node and incarnation, when it arrived (true ns), and
/// whether it came on stdout (events) or stderr (logs).
#[derive(Debug, Clone)]
pub struct Line {
    /// Node index.
    pub node: usize,
    /// Incarnation (1 for the first start).
    pub inc: u64,
    /// Arrival, true ns.
    pub at: u128,
    /// From stdout (a JSON event) rather than stderr (a log line).
    pub event: bool,
    /// The text.
    pub text: String,
}

/// Every line of every agent, in arrival order.
pub type Lines = Arc<Mutex<Vec<Line>>>;

/// A signal the runner sends.
#[derive(Debug, Clone, Copy)]
pub enum Sig {
    /// SIGKILL.
    Kill,
    /// SIGTERM.
    Term,
    /// SIGSTOP.
    Stop,
    /// SIGCONT.
    Cont,
    /// SIGUSR1 (the agent resigns).
    Usr1,
    /// SIGUSR2 (the agent campaigns again).
    Usr2,
}

/// A started child, killed and reaped when dropped.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Sends `sig`.
    pub fn signal(&self, sig: Sig) {
        use rustix::process::{kill_process, Pid, Signal};
        let s = match sig {
            Sig::Kill => Signal::KILL,
            Sig::Term => Signal::TERM,
            Sig::Stop => Signal::STOP,
            Sig::Cont => Signal::CONT,
            Sig::Usr1 => Signal::USR1,
            Sig::Usr2 => Signal::USR2,
        };
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process(pid, s);
        }
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `grace` for it to exit.
    pub fn wait_for(&mut self, grace: Duration) -> bool {
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.exited()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process must be continued to die of anything but SIGKILL; SIGKILL works
        // on it regardless, and reaping leaves no zombie.
        self.signal(Sig::Kill);
        let _ = self.child.wait();
    }
}

/// Where the nats-server binary is: `NATS_SERVER_BIN`, the `PATH`, or Debian's /usr/sbin.
pub fn nats_server_bin() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "nats-server not found (on PATH, at /usr/sbin/nats-server or in NATS_SERVER_BIN): install it, \
             e.g. `apt-get install nats-server` (ci/test.sh does)"
                .into()
        })
}

/// Where the agent binary is: `--agent`, else `leasehold-agent` beside this program.
pub fn agent_bin(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("no agent binary at {}", p.display()))
        };
    }
    let exe = std::env::current_exe().ok();
    let beside = exe
        .as_ref()
        .and_then(|e| e.parent().map(|d| d.join("leasehold-agent")))
        .filter(|p| p.is_file());
    // Both are built from one workspace, but only this one by `cargo run -p leasehold-sim`: an
    // agent older than it most likely runs older library code than the simulator compares with.
    let built = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(e), Some(a)) = (&exe, &beside) {
        if let (Some(te), Some(ta)) = (built(e), built(a)) {
            if ta < te {
                eprintln!(
                    "warning: {} is older than this leasehold-sim; if the library changed since, \
                     the real run tests old code: `cargo build --release --features agent --bin leasehold-agent`",
                    a.display()
                );
            }
        }
    }
    beside.ok_or_else(|| {
        "no leasehold-agent beside leasehold-sim: build it with \
         `cargo build --release --features agent --bin leasehold-agent` or pass --agent PATH"
            .into()
    })
}

/// Starts nats-server with `config`, its output in `log`.
pub fn start_server(bin: &Path, config: &Path, log: &Path) -> Result<Proc, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    Ok(Proc { child })
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Starts an agent with `args`; its stdout and stderr lines go to `lines`.
pub fn start_agent(bin: &Path, args: &[String], node: usize, inc: u64, lines: &Lines) -> Result<Proc, String> {
    let mut child = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    if let Some(out) = child.stdout.take() {
        collect(out, node, inc, true, lines.clone());
    }
    if let Some(err) = child.stderr.take() {
        collect(err, node, inc, false, lines.clone());
    }
    Ok(Proc { child })
}

fn collect(from: impl std::io::Read + Send + 'static, node: usize, inc: u64, event: bool, lines: Lines) {
    std::thread::spawn(move || {
        for text in BufReader::new(from).lines().map_while(Result::ok) {
            let line = Line {
                node,
                inc,
                at: true_ns(),
                event,
                text,
            };
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

/// The loopback ports the runner hands to servers: below Linux's ephemeral range (32768 and
/// up), so that no outgoing connection of any process takes one as its own port between the
/// reservation and the server's bind, or while a killed server is down before its restart.
const PORTS: std::ops::Range<u16> = 10_000..32_000;

/// `n` free loopback ports, each held by a listener until the caller drops it (so that no
/// other bind of this process, such as a proxy's, takes it meanwhile). A process-wide cursor
/// (started at an offset drawn from the process id) never hands a port out twice, so runs
/// in parallel threads do not race for one.
pub fn reserve_ports(n: usize) -> Result<Vec<(u16, std::net::TcpListener)>, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PORTS.end - PORTS.start);
    let offset = std::process::id().wrapping_mul(7919) % span;
    let mut out = Vec::with_capacity(n);
    for _ in 0..span {
        if out.len() == n {
            break;
        }
        let k = (offset + NEXT.fetch_add(1, Ordering::SeqCst)) % span;
        let port = PORTS.start + k as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            out.push((port, l));
        }
    }
    if out.len() < n {
        return Err(format!("no {n} free loopback ports in {}..{}", PORTS.start, PORTS.end));
    }
    Ok(out)
}

/// The last lines of the log at `path` (what a server said before it failed).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
