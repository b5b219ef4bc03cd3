//! `leasehold-sim hunt`: a short hunt with a fixed seed finds a planted bug that uniform
//! seeds do not, writes it as a scenario that fails the same way, and does it again the same
//! way; a clean file yields nothing; bad input exits 2.

use crate::cli::{sim, temp};
use std::path::{Path, PathBuf};

/// The broad scenario with `bug` planted, written into `dir`.
fn broad_with(dir: &Path, bug: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("scenarios/lease-all-faults.toml")).unwrap();
    let text = text.replacen("[membership]\n", &format!("[membership]\nbug = \"{bug}\"\n"), 1);
    let p = dir.join(format!("all-faults-{bug}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap()
}

#[test]
fn a_short_hunt_finds_skip_config_check_from_the_broad_file_and_writes_a_failing_scenario() {
    // Uniform seeds of this file never catch it: its nemesis never gives a node settings of
    // its own (README, "Guided search").
    let d = temp("hunt-found");
    let file = broad_with(&d, "skip_config_check");
    let out_dir = d.join("found");
    let args = |file: &Path, json: bool| {
        let mut a = vec![
            "hunt".to_string(),
            file.display().to_string(),
            "--budget".into(),
            "60".into(),
            "--seed".into(),
            "6".into(),
            "--shrink-trials".into(),
            "60".into(),
            "--out-dir".into(),
            out_dir.display().to_string(),
        ];
        if json {
            a.push("--json".into());
        }
        a
    };
    let run = |file: &Path, json: bool| {
        let a = args(file, json);
        sim(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run(&file, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("FOUND at simulation"), "{text}");
    let written: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let found = std::fs::read_to_string(&written[0]).unwrap();
    assert!(found.starts_with("# Found by `leasehold-sim hunt"), "{found}");
    assert!(found.contains("bug = \"skip_config_check\""), "{found}");
    // The planted bug is expected there: `run` passes the file because it is caught.
    let again = sim(&["run", written[0].to_str().unwrap(), "--json"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(json(&again)["violations"].as_u64().unwrap() > 0);
    // Deterministic: the same hunt, the same simulations and the same finding, whatever path
    // names the file.
    let moved = d.join("moved.toml");
    std::fs::copy(&file, &moved).unwrap();
    std::fs::remove_dir_all(&out_dir).unwrap();
    let (a, b) = (json(&run(&file, true)), json(&run(&moved, true)));
    for k in ["runs", "features", "corpus", "growth", "invalid"] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert_eq!(a["found"]["run"], b["found"]["run"]);
    // The same scenario, under headers that name the path each was given.
    let body = |v: &serde_json::Value, path: &Path| {
        v["found"]["toml"]
            .as_str()
            .unwrap()
            .replace(path.to_str().unwrap(), "F")
    };
    assert_eq!(body(&a, &file), body(&b, &moved));
    assert_eq!(a["runs"], a["found"]["run"], "the hunt stops at its finding");
}

/// A hunt of the broad file with `bug` planted, `budget` simulations from `seed`, unshrunk:
/// its exit code (1: found) and its JSON report.
fn short_hunt(name: &str, bug: &str, budget: &str, seed: &str) -> (Option<i32>, serde_json::Value) {
    let d = temp(name);
    let file = broad_with(&d, bug);
    let out = sim(&[
        "hunt",
        file.to_str().unwrap(),
        "--budget",
        budget,
        "--seed",
        seed,
        "--shrink-trials",
        "0",
        "--json",
        "--out-dir",
        d.join("found").to_str().unwrap(),
    ]);
    assert!(!out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), json(&out))
}

#[test]
fn a_short_hunt_reaches_a_frozen_connection_the_broad_file_never_draws() {
    // `lease-all-faults.toml` has no class that freezes a connection; the hunt adds what
    // operators and hosts do to any agent, and the conduct oracle judges it: the client that
    // pings at NATS' default of 60 s leaves it unnoticed.
    let (code, r) = short_hunt("hunt-operations", "client_default_ping", "40", "2");
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["found"]["violation"], "a frozen connection went unnoticed", "{r}");
    assert!(r["found"]["toml"].as_str().unwrap().contains("freeze_connection"));
}

#[test]
fn a_short_hunt_reaches_an_agent_campaigning_cut_off_from_its_server() {
    // Nothing in `lease-all-faults.toml` disconnects an agent from its server (uniform seeds:
    // 0 of 100); the hunt adds a server down or a frozen connection, and the conduct oracle
    // judges the agent before issue 31, which campaigns while it has reported its connection
    // down.
    let (code, r) = short_hunt("hunt-cut-off", "campaign_while_disconnected", "40", "2");
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["found"]["violation"], "an agent campaigned while disconnected", "{r}");
    let toml = r["found"]["toml"].as_str().unwrap();
    assert!(
        toml.contains("server_down") || toml.contains("freeze_connection"),
        "{toml}"
    );
}

#[test]
fn a_short_hunt_reaches_a_slow_link_the_broad_file_never_draws() {
    // `lease-all-faults.toml` slows no one node's link; the hunt adds it as an operation, and
    // the calm oracle judges that the healthy majority keeps a leader: the agent before issue
    // 24 keeps deferring to a best-ranked node whose round trip is too long to win.
    let (code, r) = short_hunt("hunt-lag", "defer_to_slow", "100", "17");
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["found"]["violation"], "no leader in a calm stretch", "{r}");
    assert!(r["found"]["toml"].as_str().unwrap().contains("[at.lag]"));
}

#[test]
fn a_short_hunt_reaches_a_preempted_clock_read_the_broad_file_never_draws() {
    // `lease-all-faults.toml` preempts no clock read (uniform seeds: 0 of 3 x 100); the hunt
    // adds bursts of them, and the clocks oracle judges each composed read: the old read
    // counts a preemption as suspended time and jumps ahead by it.
    let (code, r) = short_hunt("hunt-preempt", "ratcheting_clock_read", "40", "6");
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["found"]["violation"], "an agent's clock jumped ahead", "{r}");
    assert!(r["found"]["toml"].as_str().unwrap().contains("preempt"));
}

#[test]
fn a_hunt_of_the_clean_library_finds_nothing_and_exits_0() {
    let d = temp("hunt-clean");
    let out = sim(&[
        "hunt",
        "scenarios/lease-all-faults.toml",
        "--budget",
        "40",
        "--seed",
        "7",
        "--json",
        "--out-dir",
        d.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let r = json(&out);
    assert_eq!(r["runs"], 40);
    assert!(r["found"].is_null());
    let growth = r["growth"].as_array().unwrap();
    assert!(
        growth.len() > 1 && r["corpus"].as_u64().unwrap() > 1,
        "coverage grew: {growth:?}"
    );
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "nothing written");
}

#[test]
fn hunt_refuses_a_known_bad_file_and_a_bad_budget_with_exit_2() {
    let out = sim(&["hunt", "scenarios/known-bad/bug-ignore-drift.toml", "--budget", "5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expects no violation"));
    let out = sim(&["hunt", "scenarios/lease-calm-3.toml", "--budget", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a duration"));
    let out = sim(&["hunt", "scenarios/lease-calm-3.toml", "--shard", "3/2"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn hunt_shards_draw_their_own_streams_and_merge_into_one_exit_code() {
    let d = temp("hunt-shards");
    let mut files = Vec::new();
    for i in 0..2 {
        let shard = format!("{i}/2");
        let out = sim(&[
            "hunt",
            "scenarios/lease-calm-3.toml",
            "--budget",
            "6",
            "--shard",
            &shard,
            "--json",
            "--out-dir",
            d.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let f = d.join(format!("shard{i}.json"));
        std::fs::write(&f, &out.stdout).unwrap();
        files.push(f);
    }
    let a: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[1]).unwrap()).unwrap();
    assert_ne!(a["growth"], b["growth"], "two shards, two streams");
    let out = sim(&["merge", files[0].to_str().unwrap(), files[1].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 shards, 12 simulations"), "{text}");
}
