//! The `leasehold-sim` command line: exit codes, JSON lines, outputs for failing seeds.

use std::path::Path;
use std::process::Command;

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leasehold-sim"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap()
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("leasehold-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_bad_scenario_exits_2_naming_file_line_and_key_and_simulates_nothing() {
    let d = temp("bad");
    let good = d.join("good.toml");
    std::fs::write(&good, "nodes = 3\nduration = \"5s\"\n").unwrap();
    let bad = d.join("bad.toml");
    std::fs::write(
        &bad,
        "nodes = 3\n[faults]\nrestart = { every = \"1s\", down_for = \"2s..1s\" }\n",
    )
    .unwrap();
    let out = sim(&["run", good.to_str().unwrap(), bad.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3: key `down_for`", bad.display())), "{err}");
    assert!(out.stdout.is_empty(), "nothing was simulated, not even the good file");
}

#[test]
fn json_gives_one_object_per_scenario_and_exit_0_when_expectations_hold() {
    let out = sim(&[
        "run",
        "scenarios/lease-calm-3.toml",
        "scenarios/known-bad/allcall-partition.toml",
        "--json",
        "--seeds",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for k in [
        "name",
        "algorithm",
        "seeds",
        "violations",
        "first_failing_seed",
        "sim_seconds",
        "wall_seconds",
        "leader_changes",
        "failover_p50_ms",
        "failover_p99_ms",
    ] {
        assert!(lines[0].get(k).is_some(), "missing {k}");
    }
    assert_eq!(lines[0]["violations"], 0);
    assert_eq!(lines[1]["algorithm"], "allcall");
    assert!(lines[1]["first_failing_seed"].is_u64());
}

#[test]
fn an_unmet_expectation_exits_1_with_the_replay_command() {
    // allcall under partition, judged as if it had to be safe.
    let d = temp("unmet");
    let f = d.join("split.toml");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/known-bad/allcall-partition.toml"),
    )
    .unwrap();
    std::fs::write(&f, text.replace("violation = true", "violation = false")).unwrap();
    let out = sim(&["run", f.to_str().unwrap(), "--seeds", "5", "--out", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("VIOLATION") && err.contains(&format!("replay {} --seed", f.display())),
        "{err}"
    );
    let svg = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().extension().is_some_and(|x| x == "svg"));
    let svg = std::fs::read_to_string(svg.expect("an SVG for the failing seed").path()).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("two leaders at once"));
    let perfetto = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().to_string_lossy().ends_with(".perfetto.json"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(perfetto.path()).unwrap()).unwrap();
    assert!(v["traceEvents"].as_array().unwrap().iter().any(|e| e["ph"] == "X"));
}

#[test]
fn sharding_splits_the_seeds() {
    let run = |shard: &str| {
        let out = sim(&[
            "run",
            "scenarios/lease-calm-3.toml",
            "--json",
            "--seeds",
            "10",
            "--shard",
            shard,
        ]);
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["seeds"].as_u64().unwrap()
    };
    assert_eq!(run("0/3") + run("1/3") + run("2/3"), 10);
    assert_eq!(
        sim(&["run", "scenarios/lease-calm-3.toml", "--shard", "3/3"])
            .status
            .code(),
        Some(2)
    );
}
