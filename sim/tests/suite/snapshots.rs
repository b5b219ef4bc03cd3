//! A snapshot of every scenario's trace summary for its pinned seed (`first_seed`), kept in
//! the top-level `snapshots/` folder. Any change in behaviour shows as a reviewed diff.

use leasehold_sim::oracle::secs;
use leasehold_sim::sweep::scenario_files;
use leasehold_sim::{run_seed, RunReport, Scenario};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

fn summary(r: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scenario: {}\nseed: {}\ntrace digest: {:016x}\ntrace events: {}",
        r.scenario,
        r.seed,
        r.trace.digest,
        r.trace.events.len()
    );
    let _ = writeln!(
        s,
        "faults applied: {}\nleader changes: {}",
        r.applied.len(),
        r.figures.leader_changes
    );
    let f = &r.figures.fabric;
    let _ = writeln!(
        s,
        "messages: {} published, {} delivered, {} lost, {} cut",
        f.published, f.delivered, f.lost, f.cut
    );
    // What nats-server's routes and clients did with them, when they did anything.
    if f.route_late + f.route_closed + f.slow_dropped + f.reconnects > 0 {
        let _ = writeln!(
            s,
            "routes: {} held and delivered late, {} lost with a closed route; {} slow-consumer drops; {} reconnects",
            f.route_late, f.route_closed, f.slow_dropped, f.reconnects
        );
    }
    match r.violations.first() {
        None => s.push_str("violations: none\n"),
        Some(v) => {
            let _ = writeln!(
                s,
                "violations: {} (first: {} at {})",
                r.violations.len(),
                v.kind,
                secs(v.at)
            );
        }
    }
    if r.router.is_some() {
        let _ = writeln!(s, "{}", r.router_summary());
    }
    s.push_str("holders:\n");
    let holders: Vec<&str> = r
        .trace
        .events
        .iter()
        .filter(|e| e.what.contains("(me)"))
        .map(|e| e.what.as_str())
        .collect();
    let lines: Vec<String> = r
        .trace
        .events
        .iter()
        .filter(|e| e.what.contains("(me)"))
        .map(|e| format!("  {} {} {}", secs(e.at), e.node.as_deref().unwrap_or("-"), e.what))
        .collect();
    for l in lines.iter().take(30) {
        let _ = writeln!(s, "{l}");
    }
    if holders.len() > 30 {
        let _ = writeln!(s, "  ... {} more", holders.len() - 30);
    }
    s
}

/// Snapshot files (`<name>.snap`, insta's format) of every scenario under `scenarios` in
/// `snapshots`. A scenario without one gets it written now, so adding a scenario file needs
/// no tool beyond `cargo test`; a snapshot that differs fails with insta's diff. Returns the
/// names written.
fn check_snapshots(scenarios: &Path, snapshots: &Path) -> Vec<String> {
    let mut written = Vec::new();
    for f in scenario_files(scenarios).unwrap() {
        let rel = f.strip_prefix(scenarios).unwrap().with_extension("");
        let name = rel.to_string_lossy().replace(['/', '\\'], "__");
        let scn = Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let r = run_seed(&scn, scn.first_seed, &format!("scenarios/{}.toml", rel.display()));
        let text = summary(&r);
        let file = snapshots.join(format!("{name}.snap"));
        if !file.exists() {
            std::fs::create_dir_all(snapshots).unwrap();
            std::fs::write(&file, format!("---\nsource: sim/tests/suite/snapshots.rs\n---\n{text}")).unwrap();
            // Straight to the stream, past the test harness's capture: the writer must see it.
            let _ = writeln!(
                std::io::stderr(),
                "new snapshot: {} for {} (commit it with the scenario)",
                file.display(),
                f.display()
            );
            written.push(name.clone());
        }
        insta::with_settings!({snapshot_path => snapshots, prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(name, text);
        });
    }
    written
}

#[test]
fn scenario_trace_summaries_match_their_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    check_snapshots(&root.join("scenarios"), &root.join("snapshots"));
}

/// The scenario writer's loop: a new file gets its snapshot written and passes; the same run
/// again passes and writes nothing; a snapshot that no longer matches fails.
#[test]
fn a_new_scenario_gets_a_snapshot_and_a_changed_one_fails() {
    let dir = std::env::temp_dir().join(format!("leasehold-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (scns, snaps) = (dir.join("scenarios"), dir.join("snapshots"));
    std::fs::create_dir_all(scns.join("team")).unwrap();
    std::fs::write(
        scns.join("team/my-calm.toml"),
        "name = \"mine\"\nnodes = 3\nduration = \"5s\"\n",
    )
    .unwrap();
    assert_eq!(check_snapshots(&scns, &snaps), vec!["team__my-calm".to_string()]);
    let snap = snaps.join("team__my-calm.snap");
    let text = std::fs::read_to_string(&snap).unwrap();
    assert!(text.contains("scenario: mine") && text.contains("seed: 0"), "{text}");
    assert!(
        check_snapshots(&scns, &snaps).is_empty(),
        "the second run writes nothing"
    );
    std::fs::write(&snap, text.replace("violations: none", "violations: 1")).unwrap();
    let changed = std::panic::catch_unwind(|| check_snapshots(&scns, &snaps));
    assert!(changed.is_err(), "a snapshot that differs fails");
    let _ = std::fs::remove_dir_all(&dir);
}
