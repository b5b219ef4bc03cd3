//! `leasehold-agent status`: against a real nats-server with a real agent, it names the
//! holder, its token and its members, as a table and as JSON; with no agent it says there is
//! no leader (exit 1); with no server it names the URL (exit 1).

use crate::common::{free_port, Agent, Server};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn status(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leasehold-agent"))
        .arg("status")
        .args(args)
        .output()
        .expect("the agent runs")
}

#[test]
fn status_names_the_holder_its_token_and_the_members_from_the_bus() {
    let server = Server::start(free_port(), None);
    let url = server.url();
    let agents: Vec<Agent> = (0..2)
        .map(|i| Agent::start(&format!("n{i}"), i, &url, 2, "lease"))
        .collect();
    let end = Instant::now() + Duration::from_secs(20);
    let json = loop {
        let o = status(&["--nats", &url, "--json", "--listen", "400ms"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        if o.status.code() == Some(0) && v["members"].as_array().is_some_and(|m| m.len() == 2) {
            break v;
        }
        assert!(Instant::now() < end, "no holder: {v}\n{}", agents[0].stderr());
    };
    let holder = &json["holders"][0];
    assert_eq!(holder["id"], "n0", "{json}");
    assert!(holder["token"].as_u64().unwrap() >= 1, "{json}");
    assert!(holder["lease_remaining_ms"].as_u64().unwrap() <= 1000, "{json}");
    let ids: Vec<&str> = json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["n0", "n1"]);
    assert_eq!(json["members"][0]["state"], "leading");
    let o = status(&["--nats", &url, "--listen", "400ms"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("leader   n0 (token "), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("n1 ") && l.ends_with("follower")),
        "{table}"
    );
    // Another election on the same server has no one.
    let o = status(&["--nats", &url, "--election", "other", "--listen", "300ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("leader   none heard"));
}

#[test]
fn status_names_an_unreachable_server_and_a_bad_url() {
    let o = status(&["--nats", "nats://127.0.0.1:1", "--connect-timeout", "300ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nats://127.0.0.1:1"));
    let o = status(&["--nats", "localhost:4222x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--nats \"localhost:4222x\" is not a NATS URL"));
}

/// With cluster keys the agents seal their heartbeats: `status --cluster-key` opens them and
/// names the holder; without the keys, or with others, it hears no member and says how many
/// messages it dropped.
#[test]
fn status_opens_sealed_heartbeats_with_the_cluster_keys_and_counts_what_it_cannot() {
    let dir = std::env::temp_dir().join(format!("leasehold-status-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (keys, other) = (dir.join("cluster.keys"), dir.join("other.keys"));
    std::fs::write(&keys, "k1:00112233445566778899aabbccddeeff\n").unwrap();
    std::fs::write(&other, "k1:ffeeddccbbaa99887766554433221100\n").unwrap();
    let server = Server::start(free_port(), None);
    let url = server.url();
    let with = |f: &std::path::Path| format!("--cluster-key={}", f.display());
    let agent = Agent::start_extra("n0", 0, &url, 1, &[with(&keys)]);
    let end = Instant::now() + Duration::from_secs(20);
    let json = loop {
        let o = status(&["--nats", &url, "--json", "--listen", "400ms", &with(&keys)]);
        if o.status.code() == Some(0) {
            break serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("JSON");
        }
        assert!(Instant::now() < end, "no holder with the keys: {}", agent.stderr());
    };
    assert_eq!(json["holders"][0]["id"], "n0", "{json}");
    assert_eq!(json["dropped"], 0, "{json}");
    for args in [vec![], vec![with(&other)]] {
        let mut a = vec![
            "--nats".to_string(),
            url.clone(),
            "--json".into(),
            "--listen".into(),
            "400ms".into(),
        ];
        a.extend(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = status(&a);
        assert_eq!(o.status.code(), Some(1), "{a:?}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
        assert!(v["members"].as_array().unwrap().is_empty(), "{v}");
        assert!(
            v["dropped"].as_u64().unwrap() >= 1,
            "sealed heartbeats it cannot open: {v}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
