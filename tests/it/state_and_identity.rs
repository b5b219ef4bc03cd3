//! Durable state and identity against a real `nats-server` and real agent processes: a cluster
//! that lost every state file waits for good, through a restart; an unreadable state file is
//! moved aside and recovered from peers; two processes with one `--id` both say so and step
//! aside.
#![cfg(feature = "agent")]

use crate::common::*;
use serde_json::Value;
use std::time::Duration;

const LEASE: u64 = 1000;

fn events(a: &Agent, event: &str) -> Vec<Value> {
    a.lines().into_iter().filter(|v| v["event"] == event).collect()
}

#[test]
fn a_cluster_that_lost_every_file_waits_for_good_through_a_restart() {
    let server = Server::start(free_port(), None);
    // Started as production restarts an agent, with no state file: it cannot know the
    // highest token in use, so it waits, and says what for.
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start_existing(&format!("n{i}"), i, &server.url(), 3, LEASE))
        .collect();
    for a in &agents {
        let w = wait_for("a waiting_for_recovery line", Duration::from_secs(5), || {
            events(a, "waiting_for_recovery").first().cloned()
        });
        assert_eq!(w["need"], 2, "cluster_size - quorum + 1 answers: {w}");
        assert_eq!(w["lost_state"], true, "{w}");
        assert!(
            w["hint"].as_str().unwrap().contains("--initial-cluster-state new"),
            "the wait names the flag for a brand-new cluster: {w}"
        );
    }
    // A few lease times, then every agent restarts: the files written while waiting are
    // marked so, and the wait goes on.
    std::thread::sleep(Duration::from_millis(3 * LEASE));
    for a in &agents {
        let state = std::fs::read_to_string(a.state_file()).expect("a state file was written");
        assert!(
            state.contains("\"recovering\":true"),
            "written while waiting, and marked so: {state}"
        );
    }
    let restarted = now_us();
    for a in &mut agents {
        a.restart();
    }
    std::thread::sleep(Duration::from_millis(4 * LEASE));
    for a in &agents {
        assert!(
            !a.events_since("waiting_for_recovery", restarted).is_empty(),
            "{} says again that it waits",
            a.id
        );
        for e in ["lease_renewed", "recovered"] {
            assert!(events(a, e).is_empty(), "{} must not {e}: {:?}", a.id, events(a, e));
        }
    }
    for a in &mut agents {
        a.terminate();
    }
}

#[test]
fn an_unreadable_state_file_is_moved_aside_and_recovered_from_peers() {
    let server = Server::start(free_port(), None);
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start_with(&format!("n{i}"), i, &server.url(), 3, "lease", LEASE, "warn"))
        .collect();
    let (_, token) = wait_for("a leader", Duration::from_secs(10), || {
        holders(&agents).first().copied()
    });
    agents[2].kill();
    let state = agents[2].state_file();
    std::fs::write(&state, b"{\"incarnation\":").unwrap();
    let restarted = now_us();
    agents[2].restart();
    let unreadable = wait_for("a state_unreadable line", Duration::from_secs(5), || {
        agents[2].events_since("state_unreadable", restarted).first().cloned()
    });
    let aside = unreadable["moved_to"].as_str().expect("moved aside").to_string();
    assert!(aside.ends_with("state.json.unreadable.1"), "{unreadable}");
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        b"{\"incarnation\":",
        "the unreadable bytes are kept, not overwritten"
    );
    let recovered = wait_for("n2 to recover from its peers", Duration::from_secs(5), || {
        agents[2].events_since("recovered", restarted).first().cloned()
    });
    assert!(
        recovered["max_token"].as_u64().unwrap() >= token,
        "it learned the token in use ({token}): {recovered}"
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert!(saved["max_token"].as_u64().unwrap() >= token, "and saved it: {saved}");
    assert!(saved.get("recovering").is_none(), "whole again: {saved}");
    for a in &mut agents {
        a.terminate();
    }
    assert_no_overlap(&agents);
}

#[test]
fn two_processes_with_one_id_both_say_so_and_step_aside() {
    let server = Server::start(free_port(), None);
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start_with(&format!("n{i}"), i, &server.url(), 3, "lease", LEASE, "warn"))
        .collect();
    let (leader, _) = wait_for("a leader", Duration::from_secs(10), || {
        holders(&agents).first().copied()
    });
    assert_eq!(leader, 0);
    // A copied unit file: a second n0, with a state directory of its own.
    let started = now_us();
    agents.push(Agent::start_with("n0", 0, &server.url(), 3, "lease", LEASE, "warn"));
    for k in [0, 3] {
        let d = wait_for("a duplicate_id line", Duration::from_secs(5), || {
            agents[k].events_since("duplicate_id", started).first().cloned()
        });
        assert!(d["other_run"].is_string(), "{d}");
        // Said on stderr before the line on stdout, but read by another thread: wait for it.
        agents[k].said("an error too", Duration::from_secs(5), |err| {
            err.contains("another process runs with --id n0")
        });
    }
    // Neither n0 leads while both run: n1 takes over.
    let (next, _) = wait_for(
        "n1 to lead",
        Duration::from_millis(3 * LEASE) + Duration::from_secs(3),
        || holders(&agents).into_iter().find(|(i, _)| *i == 1),
    );
    assert_eq!(next, 1);
    std::thread::sleep(Duration::from_millis(2 * LEASE));
    let t = now_us();
    assert_eq!(agents[0].holds_at(t), None, "the first n0 stepped aside");
    assert_eq!(agents[3].holds_at(t), None, "the second n0 never leads");
    assert!(
        events(&agents[3], "lease_renewed").is_empty(),
        "the second n0 took no lease"
    );
    for a in &mut agents {
        a.terminate();
    }
    assert_no_overlap(&agents);
}
