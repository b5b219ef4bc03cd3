//! What `leasehold-agent` says about what was typed: every configuration error names the flag
//! and exits 2 before anything connects; an unreachable server exits 1 naming it; a negative
//! rank is accepted, as hnatsd's wire carries it.

#![cfg(feature = "agent")]

use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    let state = std::env::temp_dir().join(format!("leasehold-cli-{}", std::process::id()));
    // (A later `--state` in `args` wins.)
    Command::new(env!("CARGO_BIN_EXE_leasehold-agent"))
        .arg(format!("--state={}", state.join("a.state.json").display()))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("the agent runs")
}

fn said(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn each_configuration_error_names_its_flag_and_exits_2() {
    let cases: [(&[&str], &str); 7] = [
        (&["--id", "a"], "--cluster-size must be set"),
        (&["--id", "a", "--cluster-size", "0"], "--cluster-size must be set"),
        (
            &[
                "--id",
                "a",
                "--cluster-size",
                "3",
                "--lease",
                "200ms",
                "--beat",
                "100ms",
            ],
            "--lease must be at least 4 beats: 200ms is less than 4 × --beat (100ms)",
        ),
        (
            &["--id", "a", "--cluster-size", "3", "--state-loss-tolerance", "2"],
            "--state-loss-tolerance 2 is more than --cluster-size / 2 = 1",
        ),
        (
            &["--id", "a", "--cluster-size", "3", "--max-drift-ppm", "200000"],
            "--max-drift-ppm must be below 100000",
        ),
        (
            &["--id", "a", "--cluster-size", "3", "--nats", "localhost:4222x"],
            "--nats \"localhost:4222x\" is not a NATS URL",
        ),
        // A state directory that cannot be: below a file.
        (
            &["--id", "a", "--cluster-size", "3", "--state", "/dev/null/a.state.json"],
            "/dev/null",
        ),
    ];
    for (args, expected) in cases {
        let o = agent(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", said(&o));
        assert!(said(&o).contains(expected), "{args:?}: {}", said(&o));
        assert!(o.stdout.is_empty(), "{args:?}: nothing started");
    }
}

/// A metrics address that cannot be listened on is the user's to fix: exit 2, naming it,
/// before anything connects.
#[test]
fn a_metrics_address_in_use_names_the_flag_and_exits_2() {
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = agent(&["--id", "a", "--cluster-size", "3", "--metrics-addr", &addr]);
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    assert!(
        said(&o).contains(&format!("--metrics-addr {addr}: cannot listen")),
        "{}",
        said(&o)
    );
}

#[test]
fn a_negative_rank_is_accepted_and_an_unreachable_server_is_named_with_exit_1() {
    let url = "nats://127.0.0.1:1";
    for rank in [["--rank", "-1"].as_slice(), ["--rank=-1"].as_slice()] {
        let mut args = vec![
            "--id",
            "a",
            "--cluster-size",
            "3",
            "--nats",
            url,
            "--connect-timeout",
            "300ms",
        ];
        args.extend_from_slice(rank);
        let o = agent(&args);
        assert_eq!(o.status.code(), Some(1), "{rank:?}: {}", said(&o));
        assert!(said(&o).contains(&format!("cannot connect to {url}")), "{}", said(&o));
    }
}

/// `--config FILE`: the file's keys are flags (dashes or underscores), the command line wins,
/// and a key that is not a flag or a file that is not TOML is named with its file and line
/// (exit 2).
#[test]
fn a_config_file_gives_flags_that_the_command_line_overrides() {
    let dir = std::env::temp_dir().join(format!("leasehold-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("agent.toml");
    let cfg = file.to_str().unwrap();
    std::fs::write(
        &file,
        "id = \"a\"\ncluster_size = 3\nrank = -1\nnats = \"nats://127.0.0.1:1\"\nconnect-timeout = \"300ms\"\ntls = false\n",
    )
    .unwrap();
    let o = agent(&["--config", cfg]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    assert!(
        said(&o).contains("cannot connect to nats://127.0.0.1:1"),
        "the file's URL: {}",
        said(&o)
    );
    let o = agent(&["--config", cfg, "--nats", "nats://127.0.0.1:2"]);
    assert!(
        said(&o).contains("cannot connect to nats://127.0.0.1:2"),
        "the command line wins: {}",
        said(&o)
    );
    let o = agent(&["--config", cfg, "--lease", "200ms"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(said(&o).contains("--lease must be at least 4 beats"), "{}", said(&o));
    std::fs::write(&file, "id = \"a\"\n\nclustersize = 3\n").unwrap();
    let o = agent(&["--config", cfg]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        said(&o).contains(&format!("{cfg}:3: key `clustersize`: not a flag")),
        "{}",
        said(&o)
    );
    std::fs::write(&file, "id = \"a\"\ncluster-size = [3]\n").unwrap();
    let o = agent(&["--config", cfg]);
    assert!(
        said(&o).contains(&format!("{cfg}:2: key `cluster-size`")),
        "{}",
        said(&o)
    );
    std::fs::write(&file, "id = \"a\"\nlease = 10s\n").unwrap();
    let o = agent(&["--config", cfg]);
    assert_eq!(o.status.code(), Some(2));
    assert!(said(&o).contains(&format!("{cfg}:2:")), "{}", said(&o));
    let o = agent(&["--config", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(said(&o).contains("missing.toml"), "{}", said(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
