use leasehold_sim::{run_seed, Scenario};

fn scn(text: &str) -> Scenario {
    Scenario::parse("inline.toml", text).unwrap()
}

#[test]
fn calm_lease_cluster() {
    let s = scn("nodes = 3\nduration = \"30s\"\n[membership]\nlease = \"2s\"\n");
    let r = run_seed(&s, 1, "inline.toml");
    eprintln!("{}", leasehold_sim::trace::render(&r.trace[..r.trace.len().min(40)]));
    eprintln!(
        "wall {:?} changes {} fabric {:?}",
        r.wall_time, r.leader_changes, r.fabric
    );
    assert!(r.violations.is_empty(), "{}", r.describe());
    assert!(r.leader_changes >= 1);
}
