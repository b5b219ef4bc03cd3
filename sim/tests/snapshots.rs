//! A snapshot of every scenario's trace summary for its pinned seed (`first_seed`), kept in
//! the top-level `snapshots/` folder. Any change in behaviour shows as a reviewed diff.

use leasehold_sim::oracle::secs;
use leasehold_sim::sweep::scenario_files;
use leasehold_sim::{run_seed, RunReport, Scenario};
use std::fmt::Write as _;
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
    let _ = writeln!(
        s,
        "messages: {} published, {} delivered, {} lost, {} cut",
        r.figures.fabric.published, r.figures.fabric.delivered, r.figures.fabric.lost, r.figures.fabric.cut
    );
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

#[test]
fn scenario_trace_summaries_match_their_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for f in scenario_files(&root).unwrap() {
        let rel = f.strip_prefix(&root).unwrap().with_extension("");
        let name = rel.to_string_lossy().replace('/', "__");
        let scn = Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let r = run_seed(&scn, scn.first_seed, &format!("scenarios/{}.toml", rel.display()));
        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(name, summary(&r));
        });
    }
}
