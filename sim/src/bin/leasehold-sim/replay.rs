//! `leasehold-sim replay`: one seed again, its whole trace and report.

use super::*;
use crate::run::stem_of;

pub(crate) fn cmd_replay(
    file: &Path,
    seed: u64,
    ran: RanAs,
    trace_out: Option<&Path>,
    json: bool,
    out: Option<&Path>,
) -> ExitCode {
    let scn = match ran.load(file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let src = file.display().to_string();
    let mut r = if ran.swarm {
        leasehold_sim::swarm::run_swarm_seed(&scn, seed, &src, leasehold_sim::record::Keep::Everything)
    } else {
        run_seed(&scn, seed, &src)
    };
    r.replay.push_str(&ran.flags());
    if let Some(p) = trace_out {
        if let Err(e) = std::fs::write(p, r.trace.render()) {
            eprintln!("error: {}: {e}", p.display());
            return ExitCode::from(2);
        }
    }
    if let Some(dir) = out {
        match leasehold_sim::render::write_outputs(&r, &stem_of(&src), dir) {
            Ok(files) => {
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("error: writing to {}: {e}", dir.display());
                return ExitCode::from(2);
            }
        }
    }
    if json {
        println!("{}", r.json(&src));
    } else {
        if trace_out.is_none() {
            print!("{}", r.trace.render());
        }
        if let Some(w) = &r.swarm {
            println!("{w}\n[faults]\n{}", w.faults);
        }
        println!("{}", r.describe());
        if r.router.is_some() {
            println!("{}", r.router_summary());
        }
        println!("trace digest {:016x}", r.trace.digest);
    }
    if r.shows(scn.expect.violation) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
