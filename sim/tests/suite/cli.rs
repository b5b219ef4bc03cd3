//! The `leasehold-sim` command line: exit codes, JSON lines, outputs for failing seeds.

use std::path::Path;
use std::process::Command;

pub(crate) fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leasehold-sim"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap()
}

pub(crate) fn temp(name: &str) -> std::path::PathBuf {
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

/// Runs the simulator, which must exit 0; its first JSON line.
fn first_json(args: &[&str]) -> serde_json::Value {
    let out = sim(args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    json_lines(&out).swap_remove(0)
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn json_names_the_file_every_failing_seed_and_the_replay_command() {
    let v = &first_json(&[
        "run",
        "scenarios/known-bad/allcall-partition.toml",
        "--json",
        "--seeds",
        "6",
        "--keep-going",
    ]);
    assert_eq!(v["file"], "scenarios/known-bad/allcall-partition.toml");
    assert_eq!(v["seeds"], 6, "--keep-going runs every seed");
    let failing: Vec<u64> = v["failing_seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(failing.len() as u64, v["violations"].as_u64().unwrap());
    assert_eq!(Some(failing[0]), v["first_failing_seed"].as_u64());
    let replay = v["replay"].as_str().unwrap();
    assert!(
        replay.ends_with(&format!(
            "replay scenarios/known-bad/allcall-partition.toml --seed {}",
            failing[0]
        )),
        "{replay}"
    );
}

#[test]
fn zero_seeds_and_impossible_values_are_errors() {
    let out = sim(&["run", "scenarios/lease-calm-3.toml", "--seeds", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be at least 1"));
    let d = temp("zero");
    let f = d.join("zero.toml");
    std::fs::write(
        &f,
        "nodes = 3\n[expect]\n# leader_within = \"5s\"\nleader_within = \"0s\"\n",
    )
    .unwrap();
    let out = sim(&["run", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4: key `expect.leader_within`", f.display())),
        "{err}"
    );
}

#[test]
fn replay_gives_json_and_pictures_and_out_all_covers_passing_seeds() {
    let d = temp("replay");
    let v = &first_json(&[
        "replay",
        "scenarios/known-bad/allcall-partition.toml",
        "--seed",
        "0",
        "--json",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_eq!(
        (v["seed"].as_u64(), v["file"].as_str()),
        (Some(0), Some("scenarios/known-bad/allcall-partition.toml"))
    );
    assert_eq!(v["violations"][0]["kind"], "overlap");
    assert!(v["trace_digest"].as_str().is_some_and(|d| d.len() == 16));
    for ext in ["trace.txt", "svg", "perfetto.json"] {
        assert!(d.join(format!("allcall-partition-seed0.{ext}")).exists(), "{ext}");
    }
    let all = temp("out-all");
    let out = sim(&[
        "run",
        "scenarios/lease-calm-3.toml",
        "--seeds",
        "2",
        "--out",
        all.to_str().unwrap(),
        "--out-all",
    ]);
    assert!(out.status.success());
    for seed in [0, 1] {
        assert!(
            all.join(format!("lease-calm-3-seed{seed}.svg")).exists(),
            "seed {seed} passed and is drawn"
        );
    }
}

#[test]
fn swarm_draws_are_reported_and_replayed() {
    let v = &first_json(&[
        "run",
        "scenarios/known-bad/bug-accept-stale-replies.toml",
        "--json",
        "--swarm",
        "--seeds",
        "30",
    ]);
    assert_eq!(v["swarm"], true);
    let on: Vec<String> = serde_json::from_value(v["first_failing_faults"].clone()).unwrap();
    assert!(!on.is_empty());
    let seed = v["first_failing_seed"].as_u64().unwrap().to_string();
    assert!(v["replay"]
        .as_str()
        .unwrap()
        .ends_with(&format!("--seed {seed} --swarm")));
    let replay = sim(&[
        "replay",
        "scenarios/known-bad/bug-accept-stale-replies.toml",
        "--seed",
        &seed,
        "--swarm",
        "--json",
    ]);
    let r = &json_lines(&replay)[0];
    assert_eq!(r["swarm"]["on"], serde_json::json!(on), "the same draw");
    assert!(!r["violations"].as_array().unwrap().is_empty(), "the same failure");
    let text = sim(&[
        "replay",
        "scenarios/known-bad/bug-accept-stale-replies.toml",
        "--seed",
        &seed,
        "--swarm",
    ]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(&format!("swarm: {} on", on.join(", "))));
}

#[test]
fn shards_merge_into_one_summary_and_one_exit_code() {
    let d = temp("merge");
    let mut files = Vec::new();
    for i in 0..3 {
        let out = sim(&[
            "run",
            "scenarios/lease-calm-3.toml",
            "scenarios/known-bad/allcall-partition.toml",
            "--json",
            "--seeds",
            "9",
            "--keep-going",
            "--shard",
            &format!("{i}/3"),
        ]);
        let f = d.join(format!("shard-{i}.jsonl"));
        std::fs::write(&f, &out.stdout).unwrap();
        files.push(f.to_str().unwrap().to_string());
    }
    let whole = json_lines(&sim(&[
        "run",
        "scenarios/lease-calm-3.toml",
        "scenarios/known-bad/allcall-partition.toml",
        "--json",
        "--seeds",
        "9",
        "--keep-going",
    ]));
    let mut args = vec!["merge", "--json"];
    args.extend(files.iter().map(|s| s.as_str()));
    let out = sim(&args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let merged = json_lines(&out);
    assert_eq!(merged.len(), 2);
    for (m, w) in merged.iter().zip(&whole) {
        for k in [
            "seeds",
            "violations",
            "failing_seeds",
            "first_failing_seed",
            "leader_changes",
            "claims",
            "ok",
        ] {
            assert_eq!(m[k], w[k], "{k} of {}", m["file"]);
        }
    }
    let table = sim(&["merge", &files[0], &files[1], &files[2]]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("ok (violation caught, as expected)"));
    // A missing shard is an error, not a smaller sweep.
    let out = sim(&["merge", &files[0], &files[2]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard 1/3 missing"));
}

#[test]
fn a_kubernetes_indexed_job_picks_its_shard_from_the_environment() {
    let run = |index: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_leasehold-sim"));
        c.args([
            "run",
            "scenarios/lease-calm-3.toml",
            "--json",
            "--seeds",
            "10",
            "--shards",
            "4",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env_remove("JOB_COMPLETION_INDEX");
        if let Some(i) = index {
            c.env("JOB_COMPLETION_INDEX", i);
        }
        c.output().unwrap()
    };
    let out = run(Some("1"));
    assert!(out.status.success());
    let v = &json_lines(&out)[0];
    assert_eq!(
        (v["seeds"].as_u64(), v["shard"].as_str()),
        (Some(3), Some("1/4")),
        "seeds 1, 5 and 9"
    );
    let out = run(None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JOB_COMPLETION_INDEX"));
    assert_eq!(run(Some("4")).status.code(), Some(2));
}

#[test]
fn shrink_writes_into_the_repository_that_holds_the_file() {
    let repo = temp("shrink-repo");
    std::fs::create_dir_all(repo.join("scenarios/known-bad")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/known-bad/bug-grant-ignoring-promise-scripted.toml"),
        repo.join("scenarios/known-bad/mine.toml"),
    )
    .unwrap();
    // Run from somewhere else entirely: the output does not follow the working directory.
    let out = Command::new(env!("CARGO_BIN_EXE_leasehold-sim"))
        .args([
            "shrink",
            repo.join("scenarios/known-bad/mine.toml").to_str().unwrap(),
            "--seed",
            "0",
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = repo.join("scenarios/regressions/mine-seed0.toml");
    let text = std::fs::read_to_string(&written).unwrap_or_else(|e| panic!("{}: {e}", written.display()));
    assert!(text.contains("(shrunk)\"") && !text.contains("(seed"), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("wrote {}", written.display())), "{stdout}");
    let file = repo.join("elsewhere.toml");
    let out = sim(&[
        "shrink",
        "scenarios/known-bad/bug-grant-ignoring-promise-scripted.toml",
        "--seed",
        "0",
        "--out-file",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success() && file.exists());
}

#[test]
fn overrides_are_carried_into_the_replay_command_and_dotted_names_keep_their_stem() {
    let out = sim(&[
        "run",
        "scenarios/known-bad/allcall-partition.toml",
        "--json",
        "--seeds",
        "3",
        "--duration",
        "20s",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = &json_lines(&out)[0];
    assert_eq!(v["sim_seconds"].as_f64(), Some(20.0 * v["seeds"].as_f64().unwrap()));
    let replay = v["replay"].as_str().unwrap();
    assert!(replay.ends_with("--duration \"20s\""), "{replay}");
    let seed = v["first_failing_seed"].as_u64().unwrap().to_string();
    let d = temp("dotted");
    let f = d.join("split.v2.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/known-bad/allcall-partition.toml"),
        &f,
    )
    .unwrap();
    let r = sim(&[
        "replay",
        f.to_str().unwrap(),
        "--seed",
        &seed,
        "--duration",
        "20s",
        "--json",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(json_lines(&r)[0]["sim_seconds"].as_f64(), Some(20.0));
    assert!(
        d.join(format!("split.v2-seed{seed}.svg")).exists(),
        "the whole stem names the file"
    );
}

#[test]
fn check_exits_0_when_clean_1_with_a_counterexample_and_2_on_a_bad_flag() {
    let out = sim(&["check", "--nodes", "2", "--depth", "8", "--budget", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("exhaustive") && text.contains("no violation"), "{text}");
    let dir = temp("check");
    let file = dir.join("found.toml");
    let file = file.to_str().expect("utf-8 path");
    let out = sim(&[
        "check",
        "--depth",
        "14",
        "--faults",
        "partition",
        "--bug",
        "grant_ignoring_promise",
        "--out-file",
        file,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("violation: two holders") && text.contains("isolate p"),
        "{text}"
    );
    assert!(text.contains("written as a scenario"), "{text}");
    // The counterexample is a scenario the simulator fails as expected: replay exits 0.
    let out = sim(&["replay", file, "--seed", "0"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("two leaders at once"), "{shown}");
    let out = sim(&["check", "--faults", "flood"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown fault class \"flood\""));
    let out = sim(&["check", "--nodes", "3", "--clocks", "1,2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one per node"));
    let out = sim(&["check", "--tick", "1ms"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 5ms"));
}
