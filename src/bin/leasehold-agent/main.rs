//! `leasehold-agent`: one membership agent on a real NATS server, printing leadership changes
//! as JSON lines on stdout (logs go to stderr; `RUST_LOG` sets their level).
//!
//! Every line is one `leasehold::events::EventLine`: `v` (the schema version), `node`,
//! `at_unix_us` and `event`, with the fields of that event; the README lists every event and
//! field ("The agent's events"). Errors an operator must act on (`duplicate_id`, `undersized`)
//! are also said on stderr. SIGINT or SIGTERM stops the agent cleanly: a leader releases its
//! lease first. `gave_up` says the connection stayed down for `--max-disconnected` (the agent
//! then exits 1). SIGUSR1 makes the agent step down: it gives its lease up at once, if it holds
//! it, and does not campaign until SIGUSR2 (`resign` and `campaign` lines say so); before
//! maintenance, say. The agent also answers router pings on `<prefix>ping.<id>` (see
//! `leasehold::router`).
//!
//! For `leasehold-sim real`, which judges real agents with the simulator's oracle: lease lines
//! also carry `from_local_ns` / `until_local_ns` (`at_local_ns` on release), readings of the
//! agent's own monotonic clock, and `clock` lines map that clock to the host's
//! `CLOCK_MONOTONIC` (`true_ns`, `local_ns`, `ppm`, `wall_offset_ns`). Hidden, test-only
//! flags serve the runner: `--test-clock FILE` (a clock it drives, see `test_clock.rs`),
//! `--plant-bug NAME` (a planted bug, so real runs can show the oracle catching it),
//! `--test-seed N` (the election's random draws seeded as the simulator seeds them) and
//! `--test-guard` / `--test-fenced-writes SUBJECT` (applications on the public API whose guards
//! it judges, see `test_app.rs`).

mod config_file;
mod connect;
mod metrics;
mod status;
mod test_app;
#[cfg(target_os = "linux")]
mod test_clock;
mod test_saves;

use clap::Parser;
use leasehold::events::{AgentEvent, EventLine, WallAt};
use leasehold::{
    Algorithm, Bug, BugKnobs, Clock, ClusterState, Connection, FileStorage, Membership, MembershipCfg, NatsNetwork,
    NatsOptions, Notice, TokioClock,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One leasehold membership agent on NATS. `leasehold-agent status --help`: who holds an
/// election's lease, from the heartbeats on the bus.
#[derive(Parser, Debug)]
#[command(name = "leasehold-agent", version, args_override_self = true)]
struct Args {
    /// Read flags from this TOML file: each key a flag's name, each value its value
    /// (`cluster-size = 3`, `lease = "10s"`, `tls = true`); flags on the command line win.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The connection to NATS.
    #[command(flatten)]
    conn: connect::NatsFlags,
    /// This agent's ID, unique in the cluster.
    #[arg(long)]
    id: String,
    /// Rank: lower is preferred as leader; negative ranks are allowed (`--rank -1`), as
    /// hnatsd's wire carries them.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    rank: i64,
    /// Number of agents in the cluster (the `lease` algorithm needs a majority of it).
    #[arg(long)]
    cluster_size: Option<usize>,
    /// Election algorithm: lease or allcall.
    #[arg(long, default_value = "lease")]
    algorithm: Algorithm,
    /// Heartbeat period.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    beat: Duration,
    /// Lease time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    lease: Duration,
    /// Largest wall-clock disagreement tolerated (allcall) / liveness slack (lease).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    max_clock_skew: Duration,
    /// Largest clock rate error of any agent, in ppm (every agent must use the same).
    #[arg(long, default_value_t = 1000)]
    max_drift_ppm: u32,
    /// Subject prefix.
    #[arg(long, default_value = "_nats.cluster.members.")]
    prefix: String,
    /// The election's name: agents with different names run independent elections on the
    /// same NATS (subjects `<prefix><election>.…`, and a state file of its own). Default: the
    /// one election of the prefix, on hnatsd's subjects.
    #[arg(long, default_value = "")]
    election: String,
    /// File keeping the incarnation and highest fencing token across restarts. Default:
    /// `$STATE_DIRECTORY/leasehold-<id>.state.json` (systemd's `StateDirectory=`), else
    /// `$XDG_STATE_HOME/leasehold/…`, else `~/.local/state/leasehold/…`; never the working
    /// directory, which a container restart throws away.
    #[arg(long)]
    state: Option<PathBuf>,
    /// `new` only for the very first start of a brand-new cluster: a start that finds no
    /// state file then skips the wait of one lease time. `existing` (the default) never
    /// assumes that a missing state file means a new cluster.
    /// Also from `$LEASEHOLD_INITIAL_CLUSTER_STATE`, so that a deployment can say it in an
    /// object of its own that it removes after the first start (deploy/kubernetes/).
    #[arg(long, default_value = "existing", env = "LEASEHOLD_INITIAL_CLUSTER_STATE")]
    initial_cluster_state: ClusterState,
    /// How many agents' state files may be restored from an old snapshot at once, this
    /// agent's own counted whatever happened to it, with fencing tokens still increasing (at
    /// most cluster size / 2; missing or unreadable files are detected and do not count). A
    /// restart waits for answers from `cluster size − majority + F` peers. Default: 1 (0 for a
    /// one-agent cluster).
    #[arg(long)]
    state_loss_tolerance: Option<usize>,
    /// Exit (code 1, after a `gave_up` line) once the connection to NATS has been down this
    /// long, so that a supervisor starts the agent afresh. Off by default: a disconnected agent
    /// holds no lease and grants nothing it could not keep, and it reconnects by itself when
    /// the server is back; a fresh process is only worth it where a supervisor does more
    /// (moves it to another server, pages someone).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_disconnected: Option<Duration>,
    /// Authenticate every election message with the cluster keys in this file:
    /// `key-id:hex-secret` lines (secrets of at least 16 bytes); the first line signs and
    /// every line verifies. Every agent of the cluster needs the same keys.
    #[arg(long)]
    cluster_key: Option<PathBuf>,
    /// Serve Prometheus/OpenMetrics text on `http://HOST:PORT/metrics` (leadership, token,
    /// lease left, members, connection, waits, leader changes, renewals, mismatches, dropped
    /// messages) and `/healthz` (200 while connected and not waiting, else 503 and why).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Test only: read the clock from this control file (`leasehold-sim real`).
    #[arg(long, hide = true)]
    test_clock: Option<PathBuf>,
    /// Test only: plant this bug (never in production).
    #[arg(long, hide = true)]
    plant_bug: Vec<String>,
    /// Test only: seed the election's random draws (its jitter and run ID) as the simulator
    /// does, so `leasehold-sim real` plays a counterexample with the simulator's timings.
    #[arg(long, hide = true)]
    test_seed: Option<u64>,
    /// Test only: run the applications of `leasehold-sim real` beside the agent (a guard and
    /// the callbacks) and print what their guards say (`guard`, `guard_ended` lines).
    #[arg(long, hide = true)]
    test_guard: bool,
    /// Test only: the guard application also writes `{"node","token"}` to this subject every
    /// beat under its guard's token, as a fenced application would (the fenced store of
    /// `leasehold-sim real`); implies `--test-guard`.
    #[arg(long, hide = true)]
    test_fenced_writes: Option<String>,
    /// Test only: print every state saved, as written (`{"test_saved": TEXT}` lines), so
    /// `leasehold-sim real` can restore exactly the save a rollback names.
    #[arg(long, hide = true)]
    test_report_saves: bool,
}

fn unix_us(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

/// Prints one event line (see `leasehold::events`).
fn emit(node: &str, event: AgentEvent) {
    let at = u64::try_from(unix_us(SystemTime::now())).unwrap_or(u64::MAX);
    if let Ok(line) = serde_json::to_string(&EventLine::new(node, at, event)) {
        println!("{line}");
    }
}

/// SIGUSR1 (resign: `true`) and SIGUSR2 (campaign again: `false`), as a stream of requests.
struct Steering {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Steering {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = signal(SignalKind::user_defined1())
                .and_then(|a| Ok((a, signal(SignalKind::user_defined2())?)))
                .map_err(|e| eprintln!("warning: SIGUSR1/SIGUSR2 will not steer this agent: {e}"))
                .ok();
            Steering { signals }
        }
        #[cfg(not(unix))]
        Steering {}
    }

    /// The next request (pending for ever without signals).
    async fn next(&mut self) -> bool {
        #[cfg(unix)]
        if let Some((usr1, usr2)) = self.signals.as_mut() {
            return tokio::select! {
                _ = usr1.recv() => true,
                _ = usr2.recv() => false,
            };
        }
        std::future::pending().await
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The agent's configuration from its flags.
fn membership_cfg(args: &Args) -> MembershipCfg {
    let mut cfg = MembershipCfg::zero();
    cfg.id = args.id.clone();
    cfg.my_rank = args.rank;
    cfg.algorithm = args.algorithm;
    cfg.cluster_size = args.cluster_size.unwrap_or(0);
    cfg.beat = args.beat;
    cfg.lease_time = args.lease;
    cfg.max_clock_skew = args.max_clock_skew;
    cfg.max_drift_ppm = args.max_drift_ppm;
    cfg.sys_member_prefix = args.prefix.clone();
    cfg.election = args.election.clone();
    cfg.hnatsd.pid = i64::from(std::process::id());
    cfg.initial_cluster_state = args.initial_cluster_state;
    cfg.state_loss_tolerance = args.state_loss_tolerance;
    cfg.set_defaults();
    cfg
}

/// The state file's path, its directory created; warns when there is no file yet.
fn prepare_state(args: &Args) -> Result<PathBuf, String> {
    let state = state_path(args)?;
    if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
    }
    if !state.exists() {
        // The agent itself says what a start without state means (see the log line after).
        eprintln!("warning: no state file at {}", state.display());
    }
    Ok(state)
}

/// Where the state file lives: `--state`, else a state directory from the environment.
fn state_path(args: &Args) -> Result<PathBuf, String> {
    if let Some(p) = &args.state {
        return Ok(p.clone());
    }
    let file = if args.election.is_empty() {
        format!("leasehold-{}.state.json", args.id)
    } else {
        format!("leasehold-{}-{}.state.json", args.id, args.election)
    };
    let env_dir = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = env_dir("STATE_DIRECTORY") {
        // systemd may list several directories, separated by ':'; use the first.
        let first = d.to_string_lossy().split(':').next().unwrap_or_default().to_string();
        return Ok(PathBuf::from(first).join(file));
    }
    let xdg = env_dir("XDG_STATE_HOME").or_else(|| env_dir("HOME").map(|h| h.join(".local/state")));
    match xdg {
        Some(d) => Ok(d.join("leasehold").join(file)),
        None => Err("no state directory: set --state, $STATE_DIRECTORY or $XDG_STATE_HOME".into()),
    }
}

/// The connection's options from the flags.
fn nats_options(args: &Args, cfg: &MembershipCfg) -> NatsOptions {
    // A frozen server or a half-open connection is noticed within 3/4 of a lease (three
    // unanswered pings), not after async-nats's default of two minutes or more.
    args.conn
        .options(format!("leasehold-agent {}", args.id), Some(cfg.ping_interval()))
}

/// The bugs named by `--plant-bug`.
fn planted(names: &[String]) -> Result<BugKnobs, String> {
    let bugs = names
        .iter()
        .map(|n| {
            Bug::ALL
                .into_iter()
                .find(|b| b.name() == n)
                .ok_or_else(|| format!("unknown bug {n:?}"))
        })
        .collect::<Result<Vec<Bug>, String>>()?;
    Ok(BugKnobs::from(bugs))
}

/// The line of a notice (`None` for those the agent does not print); the errors an operator
/// must act on are also said on stderr.
fn notice_event(node: &str, nats: &str, clock: &dyn Clock, n: &Notice) -> Option<AgentEvent> {
    match n {
        Notice::DuplicateId { inc, run } => eprintln!(
            "error: another process runs with --id {node} (incarnation {inc}, run {run:016x}); this one neither \
             promises nor campaigns while it is heard"
        ),
        Notice::Undersized { cluster_size, seen } => eprintln!(
            "error: a majority of a cluster of {seen} agrees on other settings, but --cluster-size is \
             {cluster_size}; this agent now needs that cluster's majority of promises to lead"
        ),
        _ => {}
    }
    let wall = WallAt {
        now: clock.now(),
        now_unix_us: u64::try_from(unix_us(SystemTime::now())).unwrap_or(u64::MAX),
    };
    AgentEvent::of_notice(n, node, nats, Some(wall))
}

/// An error that ends the agent: its message, and the exit code (2: configuration, 1: the
/// server could not be reached).
struct Fatal(String, u8);

fn config_error(e: impl std::fmt::Display) -> Fatal {
    Fatal(format!("{e}"), 2)
}

/// The flag that sets each configuration field the configuration's check can refuse.
const FLAGS: [(&str, &str); 9] = [
    ("id", "--id"),
    ("cluster_size", "--cluster-size"),
    ("beat", "--beat"),
    ("lease_time", "--lease"),
    ("max_drift_ppm", "--max-drift-ppm"),
    ("max_clock_skew", "--max-clock-skew"),
    ("state_loss_tolerance", "--state-loss-tolerance"),
    ("sys_member_prefix", "--prefix"),
    ("election", "--election"),
];

/// A configuration the check refused, in the flags the user typed (exit code 2).
fn flag_error(e: &leasehold::ConfigError) -> Fatal {
    let flag = FLAGS
        .iter()
        .find(|(f, _)| *f == e.field)
        .map_or(e.field, |(_, flag)| *flag);
    let mut reason = e.reason.clone();
    for (field, f) in FLAGS {
        reason = reason.replace(&format!("`{field}`"), f);
    }
    Fatal(format!("{flag} {reason}"), 2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("status") {
        return status::main(argv[1..].to_vec()).await;
    }
    let argv = match config_file::expand::<Args>(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let args = Args::parse_from(argv);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match run(&args).await {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(1),
        Err(Fatal(e, code)) => {
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}

/// Configures, connects and runs the agent until it stops; whether it failed (gave up or
/// its task failed).
async fn run(args: &Args) -> Result<bool, Fatal> {
    // Every configuration error is reported before connecting.
    let mut cfg = membership_cfg(args);
    let keys = args
        .cluster_key
        .as_deref()
        .map(leasehold::ClusterKeys::load)
        .transpose()
        .map_err(|e| config_error(format!("--cluster-key {e}")))?;
    cfg.bug_knobs = planted(&args.plant_bug).map_err(|e| config_error(format!("--plant-bug: {e}")))?;
    cfg.validate().map_err(|e| flag_error(&e))?;
    args.conn.check_url().map_err(config_error)?;
    let state = prepare_state(args).map_err(config_error)?;
    let storage = FileStorage::open(&state).map_err(|e| config_error(format!("--state: {e}")))?;
    let metrics_listener = bind_metrics(args).await?;
    let net = NatsNetwork::connect(&nats_options(args, &cfg))
        .await
        .map_err(|e| Fatal(e.to_string(), 1))?;
    // hnatsd reports the server its agent is connected to.
    let info = net.client().server_info();
    cfg.hnatsd.nats_host = info.host.clone();
    cfg.hnatsd.nats_client_port = i64::from(info.port);
    let clock = start_clock(&args.id, args.test_clock.clone()).map_err(config_error)?;
    let storage = test_saves::ReportedSaves {
        inner: storage,
        report: args.test_report_saves,
    };
    let agent = Membership::new(cfg, clock.clone(), net.clone(), storage).map_err(config_error)?;
    let agent = match args.test_seed {
        Some(seed) => agent.with_seed(seed),
        None => agent,
    };
    let agent = match keys {
        Some(k) => agent.with_cluster_keys(k),
        None => agent,
    };
    let handle = agent.handle();
    let notices = handle.notices(4096);
    let book = start_beside(args, &handle, &net, &clock);
    let metrics = metrics_listener.map(|l| {
        let m = metrics::Metrics::new();
        tokio::spawn(metrics::serve(l, m.clone(), handle.clone(), clock.clone(), book));
        m
    });
    let runner = tokio::spawn(agent.run());
    emit(
        &args.id,
        AgentEvent::Started {
            algorithm: args.algorithm.to_string(),
            nats: args.conn.nats.clone(),
        },
    );
    let gave_up = serve(args, &handle, notices, clock.as_ref(), metrics.as_deref()).await;
    let failed = match runner.await {
        Ok(Ok(())) => gave_up,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            true
        }
        Err(e) => {
            eprintln!("error: agent task: {e}");
            true
        }
    };
    let st = handle.stats();
    emit(
        &args.id,
        AgentEvent::Stopped {
            malformed: st.malformed,
            out_of_range: st.out_of_range,
            unauthenticated: st.unauthenticated,
            publish_errors: st.publish_errors,
            publishes_dropped: st.publishes_dropped,
            storage_errors: st.storage_errors,
            notices_dropped: st.notices_dropped,
        },
    );
    Ok(failed)
}

/// What runs beside the agent: the answers to router pings, the pings that move this agent's
/// network coordinate, and (test only) the applications of `leasehold-sim real`.
/// The book of network coordinates the pings feed, with what every peer's round trip is
/// estimated at.
type Book = Arc<std::sync::Mutex<leasehold::router::CoordinateBook>>;

/// The listener of `--metrics-addr`, bound before anything connects (a configuration error if
/// it cannot be).
async fn bind_metrics(args: &Args) -> Result<Option<tokio::net::TcpListener>, Fatal> {
    let Some(addr) = &args.metrics_addr else {
        return Ok(None);
    };
    tokio::net::TcpListener::bind(addr.as_str())
        .await
        .map(Some)
        .map_err(|e| config_error(format!("--metrics-addr {addr}: cannot listen: {e}")))
}

/// What runs beside the agent; returns the coordinate book the pings feed.
fn start_beside(args: &Args, handle: &leasehold::MembershipHandle, net: &NatsNetwork, clock: &Arc<dyn Clock>) -> Book {
    // Answer router pings (request/reply, with this agent's network coordinate).
    let book = Arc::new(std::sync::Mutex::new(leasehold::router::CoordinateBook::new(
        u64::from(std::process::id()),
    )));
    let ping_subject = format!("{}ping.{}", args.prefix, args.id);
    tokio::spawn(leasehold::router::serve_pings(
        net.clone(),
        ping_subject,
        args.id.clone(),
        book.clone(),
    ));
    // Measure the round trip to every peer now and then, so this agent's coordinate moves.
    tokio::spawn(ping_peers(
        handle.clone(),
        net.clone(),
        clock.clone(),
        book.clone(),
        args.prefix.clone(),
    ));
    if args.test_guard || args.test_fenced_writes.is_some() {
        test_app::start(
            handle,
            clock.clone(),
            args.id.clone(),
            args.beat,
            net.clone(),
            args.test_fenced_writes.clone(),
        );
    }
    book
}

/// Prints the agent's notices and serves signals until it stops; whether it gave up
/// (`--max-disconnected`).
async fn serve(
    args: &Args,
    handle: &leasehold::MembershipHandle,
    mut notices: leasehold::Notices,
    clock: &dyn Clock,
    metrics: Option<&metrics::Metrics>,
) -> bool {
    let node = &args.id;
    let print = |n: Notice| {
        if let Some(m) = metrics {
            m.observe(&n);
        }
        if let Some(ev) = notice_event(node, &args.conn.nats, clock, &n) {
            emit(node, ev);
        }
    };
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut steer = Steering::new();
    // With --max-disconnected: when the connection went down, and so when to give up.
    let mut down_since: Option<tokio::time::Instant> = None;
    let mut gave_up = false;
    loop {
        let give_up_at = down_since.zip(args.max_disconnected).map(|(t, max)| t + max);
        tokio::select! {
            n = notices.next() => match n {
                Some((_, n)) => {
                    if let Notice::Connection(c) = &n {
                        down_since = match c {
                            Connection::Disconnected => down_since.or(Some(tokio::time::Instant::now())),
                            Connection::Connected | Connection::Reconnected => None,
                        };
                    }
                    print(n)
                }
                None => break,
            },
            _ = async { tokio::time::sleep_until(give_up_at.unwrap_or_else(tokio::time::Instant::now)).await }, if give_up_at.is_some() => {
                let reason = format!("disconnected for {:?} (--max-disconnected)", args.max_disconnected.unwrap_or_default());
                emit(node, AgentEvent::GaveUp { nats: args.conn.nats.clone(), reason });
                gave_up = true;
                handle.stop().await;
                break;
            }
            resign = steer.next() => {
                if resign {
                    handle.resign();
                } else {
                    handle.campaign();
                }
                emit(node, if resign { AgentEvent::Resign } else { AgentEvent::Campaign });
            }
            _ = &mut stop => {
                handle.stop().await;
                break;
            }
        }
    }
    while let Some((_, n)) = notices.try_next() {
        print(n);
    }
    gave_up
}

/// Pings one known member every second, round robin, feeding the coordinate book.
async fn ping_peers(
    handle: leasehold::MembershipHandle,
    net: NatsNetwork,
    clock: Arc<dyn Clock>,
    book: Arc<std::sync::Mutex<leasehold::router::CoordinateBook>>,
    prefix: String,
) {
    use leasehold::router::{NetworkPinger, Pinger, Server};
    let pinger = NetworkPinger::new(net, clock, Duration::from_millis(500), book);
    for k in 0usize.. {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if handle.is_stopped() {
            return;
        }
        let members = handle.members();
        if let Some(m) = members.get(k % members.len().max(1)) {
            pinger.ping(&Server::new(m.id.clone(), "", &prefix)).await;
        }
    }
}

/// The agent's clock: production's, or (test only) the one `leasehold-sim real` drives. Prints
/// the `clock` lines that map it to the host's `CLOCK_MONOTONIC`.
fn start_clock(node: &str, test: Option<PathBuf>) -> Result<Arc<dyn Clock>, String> {
    match test {
        None => Ok(Arc::new(TokioClock::new())),
        #[cfg(target_os = "linux")]
        Some(file) => {
            let (c, first) = test_clock::TestClock::new(file);
            for s in first {
                clock_line(node, s.true0, s.local0, s.ppm, s.wall_offset);
            }
            let (poller, node) = (c.clone(), node.to_string());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    for s in poller.poll() {
                        clock_line(&node, s.true0, s.local0, s.ppm, s.wall_offset);
                    }
                }
            });
            Ok(Arc::new(c))
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => Err("--test-clock needs Linux".into()),
    }
}

/// A `clock` line: from true time `true_ns` (the host's `CLOCK_MONOTONIC`) on, the agent's
/// clock reads `local_ns` and runs `ppm` fast, its wall clock offset by `wall_offset_ns`.
fn clock_line(node: &str, true_ns: u128, local_ns: u128, ppm: i64, wall_offset_ns: i128) {
    let ns = |t: u128| u64::try_from(t).unwrap_or(u64::MAX);
    emit(
        node,
        AgentEvent::Clock {
            true_ns: ns(true_ns),
            local_ns: ns(local_ns),
            ppm,
            wall_offset_ns: i64::try_from(wall_offset_ns).unwrap_or(i64::MAX),
        },
    );
}
