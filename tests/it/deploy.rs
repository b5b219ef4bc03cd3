//! The deployment files in `deploy/` hold what they say: the systemd unit starts the agent as
//! it would (its command line, its settings file, its state directory), and the agent leads
//! and stops on SIGTERM within the unit's stop timeout; the Kubernetes and compose manifests
//! parse, give every agent a persistent state directory and an ID of its own, never say `new`
//! themselves, and carry command lines the agent accepts; the Dockerfile builds the binaries
//! this repository has.

use crate::common::{free_port, Server};
use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// The value of `key=` in a unit file's lines.
fn unit_key<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// `KEY=VALUE` lines (comments and blank lines skipped).
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Runs the agent with `args` against nothing (a server that does not answer): exit 1 naming
/// the server means every flag was accepted and the configuration is valid.
fn accepted(args: &[String], what: &str) {
    // (Tests run side by side: each listens for metrics on a port of its own.)
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.strip_prefix("--metrics-addr=") {
            Some(_) => format!("--metrics-addr=127.0.0.1:{}", free_port()),
            None => a.clone(),
        })
        .collect();
    let o = Command::new(env!("CARGO_BIN_EXE_leasehold-agent"))
        .args(&args)
        .args(["--nats=nats://127.0.0.1:1", "--connect-timeout=200ms"])
        .env("STATE_DIRECTORY", std::env::temp_dir())
        .output()
        .expect("the agent runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("cannot connect to nats://127.0.0.1:1"),
        "{what}: the agent refused {args:?}: {err}"
    );
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

#[test]
fn the_systemd_unit_starts_the_agent_as_it_would_and_it_leads_and_stops_on_sigterm() {
    let unit = read("leasehold-agent.service");
    assert_eq!(unit_key(&unit, "StateDirectory"), Some("leasehold"));
    assert_eq!(
        unit_key(&unit, "RestartPreventExitStatus"),
        Some("2"),
        "a configuration error is not retried"
    );
    assert_eq!(unit_key(&unit, "EnvironmentFile"), Some("/etc/leasehold/agent.env"));
    let stop_within: u64 = unit_key(&unit, "TimeoutStopSec")
        .and_then(|t| t.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec");
    let exec = unit_key(&unit, "ExecStart").expect("ExecStart");
    // The example settings, with this test's server, a cluster of one and a free port.
    let server = Server::start(free_port(), None);
    let port = free_port();
    let mut env = env_file(&read("agent.env"));
    for k in [
        "LEASEHOLD_NATS",
        "LEASEHOLD_ID",
        "LEASEHOLD_CLUSTER_SIZE",
        "LEASEHOLD_METRICS_ADDR",
    ] {
        assert!(env.contains_key(k), "agent.env sets {k}");
    }
    env.insert("LEASEHOLD_NATS".into(), server.url());
    env.insert("LEASEHOLD_CLUSTER_SIZE".into(), "1".into());
    env.insert("LEASEHOLD_METRICS_ADDR".into(), format!("127.0.0.1:{port}"));
    env.insert("LEASEHOLD_INITIAL_CLUSTER_STATE".into(), "new".into());
    // systemd's `${VAR}` expansion, one word per argument.
    let mut words = exec.split_whitespace().map(|w| {
        env.iter()
            .fold(w.to_string(), |w, (k, v)| w.replace(&format!("${{{k}}}"), v))
    });
    assert_eq!(words.next().as_deref(), Some("/usr/local/bin/leasehold-agent"));
    let args: Vec<String> = words.collect();
    assert!(
        args.iter().all(|a| !a.contains("${")),
        "every variable is set in agent.env: {args:?}"
    );
    let state = std::env::temp_dir().join(format!("leasehold-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_leasehold-agent"))
        .args(&args)
        .envs(&env)
        .env("STATE_DIRECTORY", &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the agent starts");
    let end = Instant::now() + Duration::from_secs(15);
    while !http_get(port, "/metrics").contains("leasehold_is_leader 1") {
        assert!(Instant::now() < end, "the unit's agent never led");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(http_get(port, "/healthz").contains("200 OK"));
    let file = state.join(format!("leasehold-{}.state.json", env["LEASEHOLD_ID"]));
    assert!(
        file.is_file(),
        "its state file is in $STATE_DIRECTORY: {}",
        file.display()
    );
    let stopped = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
    let code = loop {
        if let Ok(Some(s)) = agent.try_wait() {
            break s.code();
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(stop_within),
            "still running after TimeoutStopSec"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0), "a clean stop");
    let _ = std::fs::remove_dir_all(&state);
    // systemd's own check of the unit, where this machine has it (the binary and the settings
    // file at this checkout's paths, as the unit would find them installed).
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let copy = std::env::temp_dir().join(format!("leasehold-agent-{}.service", std::process::id()));
        let text = unit
            .replace("/usr/local/bin/leasehold-agent", env!("CARGO_BIN_EXE_leasehold-agent"))
            .replace("/etc/leasehold/agent.env", deploy("agent.env").to_str().unwrap());
        std::fs::write(&copy, text).unwrap();
        let o = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&copy);
        // (It exits 0 on a line it ignores: any word from it is a finding.)
        let said = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && said.trim().is_empty(),
            "systemd-analyze verify: {said}"
        );
    }
}

/// Every document of a YAML file, merge keys applied.
fn yaml_docs(file: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(&read(file))
        .map(|d| {
            let mut v = Value::deserialize(d).unwrap_or_else(|e| panic!("deploy/{file}: {e}"));
            v.apply_merge().unwrap_or_else(|e| panic!("deploy/{file}: {e}"));
            v
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(|a| a.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[test]
fn the_kubernetes_statefulset_keeps_state_names_each_pod_and_leaves_new_to_a_configmap() {
    let docs = yaml_docs("kubernetes/statefulset.yaml");
    let set = docs.iter().find(|d| d["kind"] == "StatefulSet").expect("a StatefulSet");
    let replicas = set["spec"]["replicas"].as_u64().expect("replicas");
    let pod = &set["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = strings(&c["args"]);
    assert!(
        args.contains(&format!("--cluster-size={replicas}")),
        "the size is the replicas: {args:?}"
    );
    assert!(
        args.contains(&"--id=$(POD_NAME)".to_string()),
        "each pod its own ID: {args:?}"
    );
    assert!(
        args.iter().all(|a| !a.contains("initial-cluster-state")),
        "never `new` in the set itself"
    );
    let env = c["env"].as_sequence().expect("env");
    let bootstrap = env
        .iter()
        .find(|e| e["name"] == "LEASEHOLD_INITIAL_CLUSTER_STATE")
        .expect("the new-cluster switch from its own object");
    assert_eq!(bootstrap["valueFrom"]["configMapKeyRef"]["optional"], Value::Bool(true));
    let claim = set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
        .as_str()
        .expect("a volume per pod");
    let mount = c["volumeMounts"]
        .as_sequence()
        .and_then(|m| m.iter().find(|m| m["name"] == claim))
        .and_then(|m| m["mountPath"].as_str())
        .expect("the claim is mounted");
    let state = args.iter().find_map(|a| a.strip_prefix("--state=")).expect("--state");
    assert!(
        state.starts_with(mount),
        "the state file {state} is on the volume {mount}"
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    let run: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with("--nats=") && !a.starts_with("--state="))
        .map(|a| a.replace("$(POD_NAME)", "leasehold-0"))
        .collect();
    accepted(&run, "the StatefulSet's arguments");
}

#[test]
fn the_compose_file_runs_three_agents_with_their_own_ids_and_volumes() {
    let docs = yaml_docs("docker-compose.yaml");
    let services = docs[0]["services"].as_mapping().expect("services");
    let agents: Vec<&Value> = services.values().filter(|s| s["image"] == "leasehold:latest").collect();
    assert_eq!(agents.len(), 3);
    let mut ids = Vec::new();
    let mut volumes = Vec::new();
    for a in &agents {
        let args = strings(&a["command"]);
        assert!(args.contains(&"--cluster-size=3".to_string()), "{args:?}");
        assert!(
            args.iter().all(|a| !a.contains("initial-cluster-state")),
            "never `new` by default"
        );
        ids.push(
            args.iter()
                .find_map(|a| a.strip_prefix("--id="))
                .expect("--id")
                .to_string(),
        );
        volumes.extend(strings(&a["volumes"]));
        let run: Vec<String> = args.iter().filter(|a| !a.starts_with("--nats=")).cloned().collect();
        accepted(&run, "a compose service's command");
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three IDs");
    assert!(
        volumes.iter().all(|v| v.ends_with(":/var/lib/leasehold")),
        "{volumes:?}"
    );
    volumes.sort();
    volumes.dedup();
    assert_eq!(volumes.len(), 3, "a volume each");
}

#[test]
fn the_dockerfile_builds_the_binaries_this_repository_has() {
    let text = read("Dockerfile");
    for bin in ["--bin leasehold-agent", "--bin leasehold-sim"] {
        assert!(text.contains(bin), "{bin}");
    }
    assert!(text.contains("ENTRYPOINT [\"leasehold-agent\"]"));
    assert!(text.contains("ENV STATE_DIRECTORY=/var/lib/leasehold"));
    assert!(text.contains("VOLUME /var/lib/leasehold"));
    assert!(
        text.contains("COPY scenarios /scenarios"),
        "the sweeps of docs/sweeps.md read /scenarios"
    );
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sim/src/bin/leasehold-sim")
        .is_dir());
}
