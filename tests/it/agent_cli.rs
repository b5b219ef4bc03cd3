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
