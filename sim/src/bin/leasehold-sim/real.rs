//! `leasehold-sim real`: scenario files against real processes, the simulated figures of the
//! same seeds beside.

use crate::{load_some, SeedChoice};
use leasehold_sim::agreement::{compare, per_seed, Agreement};
use leasehold_sim::real::{handle_interrupts, run_real, unsupported, RealOpts, RealRun};
use leasehold_sim::report::RunReport;
use leasehold_sim::sweep::{sweep, sweep_with, Summary, SweepOptions};
use leasehold_sim::{Violation, ViolationKind};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// One scenario's outcome: skipped with a reason, or both summaries and each figure compared.
enum Row {
    Skipped {
        name: String,
        source: String,
        why: String,
    },
    Ran {
        real: Box<Summary>,
        sim: Box<Summary>,
        agreement: Vec<Agreement>,
    },
}

pub(crate) fn cmd_real(
    paths: &[PathBuf],
    seeds: &SeedChoice,
    json: bool,
    out: Option<&Path>,
    agent: Option<PathBuf>,
    compare_figures: bool,
) -> ExitCode {
    let scns = match load_some(paths, None) {
        Ok(s) => s,
        Err(code) => return code,
    };
    handle_interrupts();
    let opts = RealOpts { agent };
    let mut rows = Vec::new();
    let mut broken: Option<String> = None;
    for (src, scn) in &scns {
        if let Some(why) = unsupported(scn) {
            rows.push(Row::Skipped {
                name: scn.name.clone(),
                source: src.clone(),
                why,
            });
            continue;
        }
        let row = run_both(src, scn, &seeds.list(scn), &opts, out, &mut broken);
        rows.push(row);
        if broken.is_some() {
            break;
        }
    }
    if json {
        print_json(&rows, compare_figures);
    } else {
        print_table(&rows);
        if compare_figures {
            print_agreement(&rows);
        }
    }
    if let Some(e) = broken {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let failed = rows.iter().any(|r| matches!(r, Row::Ran { real, .. } if !real.met));
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The seeds of `scn` for real, then simulated, each figure compared; a run that could not
/// be made is put in `broken`, and the seeds after it are not run.
fn run_both(
    src: &str,
    scn: &leasehold_sim::Scenario,
    list: &[u64],
    opts: &RealOpts,
    out: Option<&Path>,
    broken: &mut Option<String>,
) -> Row {
    let stem = Path::new(src)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut real_rows, mut sim_rows) = (Vec::new(), Vec::new());
    let real = sweep_with(
        scn,
        src,
        list,
        SweepOptions::default(),
        |seed| {
            if broken.is_some() {
                return not_run(scn, seed, "an earlier run could not be made");
            }
            eprintln!("{}: seed {seed} for real ({:?})...", scn.name, scn.duration.0);
            match run_real(scn, seed, src, opts) {
                Ok(run) => {
                    report_run(&run, &stem, out);
                    run.report
                }
                Err(e) => {
                    *broken = Some(format!("{src} seed {seed}: {e}"));
                    not_run(scn, seed, &e)
                }
            }
        },
        |r| real_rows.push(per_seed(r)),
    );
    let sim = sweep(scn, src, list, |r| sim_rows.push(per_seed(r)));
    Row::Ran {
        real: Box::new(real),
        sim: Box::new(sim),
        agreement: compare(&real_rows, &sim_rows),
    }
}

/// `leasehold-sim calibrate`: measures the real nats-server's routes and prints the table.
pub(crate) fn cmd_calibrate(cuts: &[std::time::Duration], trials: usize) -> ExitCode {
    handle_interrupts();
    match leasehold_sim::real::procs::nats_server_bin()
        .and_then(|bin| leasehold_sim::real::calibrate::calibrate(bin, cuts, trials))
    {
        Ok(c) => {
            print!("{c}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// One JSON line per file: real and simulated sweeps side by side, or why it was skipped.
fn print_json(rows: &[Row], compare_figures: bool) {
    for r in rows {
        let v = match r {
            Row::Skipped { name, source, why } => json!({"name": name, "source": source, "skipped": why}),
            Row::Ran { real, sim, agreement } => {
                let mut v = json!({"name": real.name, "source": real.source, "real": real.json(), "sim": sim.json()});
                if compare_figures {
                    v["agreement"] = agreement
                        .iter()
                        .map(|a| {
                            json!({
                                "figure": a.figure,
                                "real_min": a.real.map(|r| r.0),
                                "real_max": a.real.map(|r| r.1),
                                "sim_median": a.sim.map(|s| s.0),
                                "sim_min": a.sim.map(|s| s.1),
                                "sim_max": a.sim.map(|s| s.2),
                                "agrees": a.agrees,
                            })
                        })
                        .collect();
                }
                v
            }
        };
        println!("{v}");
    }
}

/// Per scenario and figure: the real spread, the simulated median (and spread) of the same
/// seeds, and whether the median lies within the real spread.
fn print_agreement(rows: &[Row]) {
    let num = |x: f64| {
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    };
    for r in rows {
        let Row::Ran { real, agreement, .. } = r else { continue };
        println!("\n{} ({} seeds, real and simulated)", real.name, real.seeds);
        println!(
            "  {:<20} {:>20} {:>28}  agree",
            "figure", "real (min..max)", "sim median (min..max)"
        );
        for a in agreement {
            let real = a
                .real
                .map_or("-".into(), |(lo, hi)| format!("{}..{}", num(lo), num(hi)));
            let sim = a.sim.map_or("-".into(), |(m, lo, hi)| {
                format!("{} ({}..{})", num(m), num(lo), num(hi))
            });
            let agrees = match a.agrees {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            println!("  {:<20} {:>20} {:>28}  {agrees}", a.figure, real, sim);
        }
    }
}

/// The report of a seed that could not be run (it counts as a failure, never as a pass).
fn not_run(scn: &leasehold_sim::Scenario, seed: u64, why: &str) -> RunReport {
    RunReport {
        scenario: scn.name.clone(),
        seed,
        replay: String::new(),
        nodes: Vec::new(),
        plan: leasehold_sim::nemesis::plan(scn, seed),
        applied: Vec::new(),
        trace: Default::default(),
        claims: Vec::new(),
        violations: vec![Violation {
            kind: ViolationKind::Panic,
            at: 0,
            claims: Vec::new(),
            detail: format!("not run: {why}"),
        }],
        figures: Default::default(),
        router: None,
        swarm: None,
        coverage: Vec::new(),
    }
}

/// Prints a failing run's report with the agents' logs around it, and writes pictures.
fn report_run(run: &RealRun, stem: &str, out: Option<&Path>) {
    let r = &run.report;
    if let Some(v) = r.violations.first() {
        eprintln!("\n{}", r.describe());
        let logs = run.logs_around(v.at);
        if !logs.is_empty() {
            eprintln!("  agent logs around it:");
            for l in logs {
                eprintln!("    {l}");
            }
        }
    }
    if let Some(dir) = out {
        match leasehold_sim::render::write_outputs(r, &format!("{stem}-real"), dir) {
            Ok(paths) => {
                let said = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
                eprintln!("wrote {}", said.join(", "));
            }
            Err(e) => eprintln!("error: writing to {}: {e}", dir.display()),
        }
    }
}

fn print_table(rows: &[Row]) {
    let name = |r: &Row| match r {
        Row::Skipped { name, .. } => name.clone(),
        Row::Ran { real, .. } => real.name.clone(),
    };
    // The first column fits the longest name.
    let w = rows.iter().map(|r| name(r).chars().count()).max().unwrap_or(0).max(19);
    println!(
        "{:<w$} {:>7} {:>7} {:>9} {:>15} {:>15} {:>13} {:>13} {:>13} {:>11} {:>8}  result",
        "scenario (real/sim)",
        "seeds",
        "viol",
        "changes",
        "fo-p50",
        "fo-p99",
        "no-leader",
        "avail",
        "gap-max",
        "claims",
        "wall"
    );
    for r in rows {
        match r {
            Row::Skipped { name, why, .. } => {
                println!("{name:<w$} skipped: {why}")
            }
            Row::Ran { real, sim, .. } => {
                let ms = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.0}ms"));
                let pair = |a: String, b: String| format!("{a}/{b}");
                let (rj, sj) = (real.json(), sim.json());
                let pct = |x: Option<f64>| x.map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0));
                let s = |x: Option<f64>| x.map_or("-".to_string(), |g| format!("{g:.1}s"));
                println!(
                    "{:<w$} {:>7} {:>7} {:>9} {:>15} {:>15} {:>13} {:>13} {:>13} {:>11} {:>7.0}s  {}",
                    real.name,
                    pair(real.seeds.to_string(), sim.seeds.to_string()),
                    pair(real.violations.to_string(), sim.violations.to_string()),
                    pair(real.leader_changes.to_string(), sim.leader_changes.to_string()),
                    pair(ms(real.failover_percentile(50.0)), ms(sim.failover_percentile(50.0))),
                    pair(ms(real.failover_percentile(99.0)), ms(sim.failover_percentile(99.0))),
                    pair(
                        format!("{:.1}s", real.no_leader.as_secs_f64()),
                        format!("{:.1}s", sim.no_leader.as_secs_f64())
                    ),
                    pair(pct(rj.availability_min), pct(sj.availability_min)),
                    pair(s(rj.longest_gap_max_s), s(sj.longest_gap_max_s)),
                    pair(real.claims.to_string(), sim.claims.to_string()),
                    real.wall_time.as_secs_f64(),
                    match (real.met, real.expected_violation) {
                        (true, true) => "ok (violation caught, as expected)",
                        (true, false) => "ok",
                        (false, true) => "FAIL (expected violation not found)",
                        (false, false) => "FAIL",
                    }
                );
            }
        }
    }
}
