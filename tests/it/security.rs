//! A stranger on the bus, against real nats-server processes and real agents, in each setup
//! of the README's "Running on a shared NATS": per-agent NATS permissions (the shipped
//! `deploy/nats-server-auth.conf`), authenticated messages (`--cluster-key`), and TLS with
//! certificates made at test time (a CA, and client certificates when the server requires
//! them; a wrong CA fails with a clear error).
//!
//! `ci/test.sh` installs nats-server; without it these tests fail, saying so.
#![cfg(feature = "agent")]

use crate::common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A raw NATS client speaking the text protocol: what a stranger with a socket can do.
struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    /// Connects and logs in (`user`, `pass` may be empty for none); the server's first answer
    /// to the login (`+OK`/`PONG`, or an `-ERR`).
    fn connect(port: u16, user: &str, pass: &str) -> (Raw, String) {
        let w = TcpStream::connect(("127.0.0.1", port)).expect("the server listens");
        w.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut r = BufReader::new(w.try_clone().unwrap());
        let mut info = String::new();
        r.read_line(&mut info).unwrap();
        let mut raw = Raw { w, r };
        let login = serde_json::json!({"verbose": false, "pedantic": false, "user": user, "pass": pass});
        raw.send(format!("CONNECT {login}\r\nPING\r\n").as_bytes());
        let first = raw.verdict();
        (raw, first)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let _ = self.r.read_line(&mut l);
        l.trim_end().to_string()
    }

    /// The server's answer to the last command (which ends with a PING): `PONG`, or the
    /// `-ERR` it sent first (messages delivered meanwhile are skipped).
    fn verdict(&mut self) -> String {
        let mut err = None;
        loop {
            let l = self.line();
            match l.strip_prefix("MSG ") {
                Some(rest) => {
                    let len: usize = rest.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0);
                    let mut buf = vec![0u8; len + 2];
                    let _ = std::io::Read::read_exact(&mut self.r, &mut buf);
                }
                None if l.starts_with("-ERR") => err = err.or(Some(l)),
                // A closed connection (an authorization error) ends the answer too.
                None if l == "PONG" || l.is_empty() => return err.unwrap_or(l),
                None => {}
            }
        }
    }

    /// Publishes and returns the server's verdict: `PONG` if accepted, else its `-ERR`.
    fn publish(&mut self, subject: &str, payload: &[u8]) -> String {
        let mut m = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        m.extend_from_slice(payload);
        m.extend_from_slice(b"\r\nPING\r\n");
        self.send(&m);
        self.verdict()
    }

    /// Subscribes and returns the server's verdict, as [`Raw::publish`].
    fn subscribe(&mut self, subject: &str) -> String {
        self.send(format!("SUB {subject} 1\r\nPING\r\n").as_bytes());
        self.verdict()
    }

    /// The payload of the next message delivered to this client.
    fn next_message(&mut self) -> Vec<u8> {
        loop {
            let head = self.line();
            if let Some(rest) = head.strip_prefix("MSG ") {
                let len: usize = rest.rsplit(' ').next().unwrap().parse().unwrap();
                let mut buf = vec![0u8; len + 2];
                std::io::Read::read_exact(&mut self.r, &mut buf).unwrap();
                buf.truncate(len);
                return buf;
            }
            assert!(!head.is_empty(), "no message arrived");
        }
    }
}

const PREFIX: &str = "_nats.cluster.members.";

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("leasehold-sec-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The one leader all three agents agree on, and its token.
fn settled_leader(agents: &[Agent]) -> (usize, u64) {
    wait_for("one leader", Duration::from_secs(15), || {
        match holders(agents).as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    })
}

/// Asserts for `how_long` that the leader stays `leader` with the same token.
fn leader_stays(agents: &[Agent], leader: (usize, u64), how_long: Duration) {
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        let h = holders(agents);
        assert!(
            h.is_empty() || h == [leader],
            "the leader changed: {h:?}, was {leader:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(holders(agents), [leader]);
}

/// The counts on each agent's last line after it is stopped.
fn stopped_counts(agents: &mut [Agent], key: &str) -> Vec<u64> {
    agents
        .iter_mut()
        .map(|a| {
            a.terminate();
            let stopped = wait_for("the stopped line", Duration::from_secs(5), || {
                a.lines().into_iter().rev().find(|v| v["event"] == "stopped")
            });
            stopped[key].as_u64().unwrap_or_else(|| panic!("no {key} in {stopped}"))
        })
        .collect()
}

#[test]
fn the_shipped_permissions_keep_a_stranger_off_the_election_subjects() {
    let conf =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats-server-auth.conf")).unwrap();
    let port = free_port();
    let server = Server::with_config(port, &conf);
    let creds = |i: usize| {
        vec![
            format!("--user=n{i}"),
            format!("--password=change-me-n{i}"),
            format!("--inbox-prefix=_INBOX.n{i}"),
        ]
    };
    let agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start_extra(&format!("n{i}"), i as i64, &server.url(), 3, &creds(i)))
        .collect();
    let leader = settled_leader(&agents);
    // The operators' read-only login sees who leads (`leasehold-agent status`).
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_leasehold-agent"))
        .args([
            "status",
            "--json",
            "--listen=400ms",
            "--user=monitor",
            "--password=change-me-monitor",
        ])
        .arg(format!("--nats={}", server.url()))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status prints JSON");
    assert_eq!(o.status.code(), Some(0), "{v} {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(v["holders"][0]["id"], format!("n{}", leader.0), "{v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{v}");
    // An application with its own login: refused on every election subject and inbox.
    let (mut app, ok) = Raw::connect(port, "app", "change-me-app");
    assert_eq!(ok, "PONG", "the application logs in");
    let release = format!(r#"{{"holder":{{"id":"n{}","inc":1}},"token":{}}}"#, leader.0, leader.1);
    for subject in ["lease.release", "hb", "lease.request"] {
        let verdict = app.publish(&format!("{PREFIX}{subject}"), release.as_bytes());
        assert!(verdict.contains("Permissions Violation"), "{subject}: {verdict}");
    }
    let verdict = app.subscribe(&format!("{PREFIX}hb"));
    assert!(
        verdict.contains("Permissions Violation"),
        "reading heartbeats: {verdict}"
    );
    let verdict = app.subscribe("_INBOX.n1.>");
    assert!(
        verdict.contains("Permissions Violation"),
        "reading n1's replies: {verdict}"
    );
    assert_eq!(app.publish("orders.new", b"{}"), "PONG", "everything else is allowed");
    // Without a login, nothing at all.
    let (_, refused) = Raw::connect(port, "", "");
    assert!(refused.contains("Authorization Violation"), "{refused}");
    leader_stays(&agents, leader, Duration::from_secs(3));
    assert_no_overlap(&agents);
}

#[test]
fn with_cluster_keys_a_strangers_messages_are_counted_and_dropped_and_replays_do_no_harm() {
    let dir = temp_dir("keys");
    let keys = dir.join("cluster.keys");
    std::fs::write(
        &keys,
        "k2:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\nk1:ffeeddccbbaa99887766554433221100\n",
    )
    .unwrap();
    let other = dir.join("other.keys");
    std::fs::write(&other, "k2:0f0e0d0c0b0a09080706050403020100\n").unwrap();
    let server = Server::start(free_port(), None);
    let key_flag = |f: &Path| vec![format!("--cluster-key={}", f.display())];
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start_extra(&format!("n{i}"), i as i64, &server.url(), 3, &key_flag(&keys)))
        .collect();
    let leader = settled_leader(&agents);
    let (mut stranger, _) = Raw::connect(server.port, "", "");
    // Capture one authentic heartbeat: a MAC authenticates, it does not hide.
    assert_eq!(stranger.subscribe(&format!("{PREFIX}hb")), "PONG");
    let authentic = stranger.next_message();
    assert!(authentic.starts_with(b"LH1 k2 "), "sealed with the first key");
    let body = &authentic[authentic.iter().position(|b| *b == b'\n').unwrap() + 1..];
    let release = format!(r#"{{"holder":{{"id":"n{}","inc":1}},"token":{}}}"#, leader.0, leader.1);
    let guessed = format!("LH1 k2 {}\n{release}", "ab".repeat(32));
    let unknown = format!("LH1 stolen {}\n{release}", "cd".repeat(32));
    // The same sealed bytes, moved to another subject: the MAC covers the subject.
    let moved = authentic.clone();
    let forged: Vec<(String, Vec<u8>)> = vec![
        (format!("{PREFIX}lease.release"), release.clone().into_bytes()),
        (format!("{PREFIX}lease.release"), guessed.into_bytes()),
        (format!("{PREFIX}lease.release"), unknown.into_bytes()),
        (format!("{PREFIX}lease.release"), moved),
        (format!("{PREFIX}hb"), body.to_vec()),
    ];
    for _ in 0..5 {
        for (subject, payload) in &forged {
            assert_eq!(stranger.publish(subject, payload), "PONG", "the server carries it");
        }
        // The authentic heartbeat, replayed on its own subject: accepted, and harmless.
        assert_eq!(stranger.publish(&format!("{PREFIX}hb"), &authentic), "PONG");
        std::thread::sleep(Duration::from_millis(200));
    }
    leader_stays(&agents, leader, Duration::from_secs(2));
    // An agent with the wrong key hears no one: it never learns of the leader.
    let mut outsider = Agent::start_extra("n9", 9, &server.url(), 3, &key_flag(&other));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !outsider.lines().iter().any(|v| v["event"] == "member_added"),
        "a wrong key hears nothing"
    );
    let outsider_drops = stopped_counts(std::slice::from_mut(&mut outsider), "unauthenticated")[0];
    assert!(
        outsider_drops > 10,
        "it dropped everyone's heartbeats: {outsider_drops}"
    );
    assert_no_overlap(&agents);
    let dropped = stopped_counts(&mut agents, "unauthenticated");
    // Every agent receives the 20 forged messages plus the outsider's heartbeats.
    assert!(
        dropped.iter().all(|d| *d >= 20),
        "each forged message counted: {dropped:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A CA, and a server and a client certificate it signed, as PEM files in `dir`.
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["agent".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let write = |file: &str, text: String| {
        let p = dir.join(format!("{name}-{file}"));
        std::fs::write(&p, text).unwrap();
        p
    };
    (
        write("ca.pem", ca.pem()),
        write("server.pem", server.pem()),
        write("server-key.pem", server_key.serialize_pem()),
        write("client.pem", client.pem()),
        write("client-key.pem", client_key.serialize_pem()),
    )
}

fn tls_server(dir: &Path, verify: bool) -> (Server, PathBuf, PathBuf, PathBuf) {
    let (ca, cert, key, client, client_key) = certificates(dir, if verify { "mtls" } else { "tls" });
    let conf = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: {verify}\n}}",
        cert.display(),
        key.display(),
        ca.display()
    );
    (Server::with_config(free_port(), &conf), ca, client, client_key)
}

#[test]
fn agents_elect_over_tls_with_a_ca_and_with_client_certificates() {
    let dir = temp_dir("tls");
    for verify in [false, true] {
        let (server, ca, client, client_key) = tls_server(&dir, verify);
        let url = format!("tls://127.0.0.1:{}", server.port);
        let mut flags = vec!["--tls".to_string(), format!("--tls-ca={}", ca.display())];
        if verify {
            flags.push(format!("--tls-cert={}", client.display()));
            flags.push(format!("--tls-key={}", client_key.display()));
        }
        let agents: Vec<Agent> = (0..3)
            .map(|i| Agent::start_extra(&format!("n{i}"), i as i64, &url, 3, &flags))
            .collect();
        let leader = settled_leader(&agents);
        leader_stays(&agents, leader, Duration::from_secs(1));
        assert_no_overlap(&agents);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_wrong_ca_or_a_missing_client_certificate_fails_with_an_error_naming_the_server() {
    let dir = temp_dir("badtls");
    let (server, ca, _, _) = tls_server(&dir, true);
    let (wrong_ca, ..) = certificates(&dir, "stranger");
    let url = format!("tls://127.0.0.1:{}", server.port);
    for (ca, why) in [(&wrong_ca, "certificate"), (&ca, "")] {
        let flags = [
            "--tls".into(),
            format!("--tls-ca={}", ca.display()),
            "--connect-timeout=2s".into(),
        ];
        let mut agent = Agent::start_extra("n0", 0, &url, 1, &flags);
        // Generous: the agent gives up after 2 s, but a loaded CI machine may be slow to run it.
        assert_eq!(agent.exit_code(Duration::from_secs(30)), Some(1), "{}", agent.stderr());
        let said = format!("cannot connect to {url} within 2s");
        let err = agent.said("why it gave up", Duration::from_secs(5), |err| err.contains(&said));
        assert!(err.to_lowercase().contains(why), "says why: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
