//! The pictures of every scenario's pinned seed follow their formats: Perfetto slices on one
//! track nest or stay apart (the trace-event format forbids partial overlap, and the viewer
//! drops such slices), and the SVG has one legend, tokens on the bars and named partitions.

use leasehold_sim::faults::Action;
use leasehold_sim::render::{perfetto_json, svg_timeline, tenures};
use leasehold_sim::sweep::scenario_files;
use leasehold_sim::{run_seed, Scenario};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Complete slices (`ph: X`) per track, as (start, end) in µs.
fn slices(trace: &Value) -> BTreeMap<(u64, u64), Vec<(f64, f64)>> {
    let mut by_track: BTreeMap<(u64, u64), Vec<(f64, f64)>> = BTreeMap::new();
    for e in trace["traceEvents"].as_array().expect("traceEvents") {
        assert!(e["ph"] != "B" && e["ph"] != "E", "only complete slices: {e}");
        if e["ph"] == "X" {
            let (ts, dur) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
            assert!(dur >= 0.0, "{e}");
            let track = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
            by_track.entry(track).or_default().push((ts, ts + dur));
        }
    }
    by_track
}

/// The first pair of slices on one track that partly overlap.
fn partial_overlap(mut s: Vec<(f64, f64)>) -> Option<((f64, f64), (f64, f64))> {
    s.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut open: Vec<(f64, f64)> = Vec::new();
    for x in s {
        while open.last().is_some_and(|o| o.1 <= x.0) {
            open.pop();
        }
        if let Some(o) = open.last() {
            if x.1 > o.1 {
                return Some((*o, x));
            }
        }
        open.push(x);
    }
    None
}

/// How many of the run's applied faults `f` picks.
fn marks(r: &leasehold_sim::RunReport, f: impl Fn(&Action) -> bool) -> usize {
    r.applied.iter().filter(|e| f(&e.action)).count()
}

#[test]
fn the_overlap_check_itself_finds_a_partial_overlap() {
    assert!(partial_overlap(vec![(0.0, 10.0), (2.0, 5.0), (5.0, 10.0)]).is_none());
    assert!(partial_overlap(vec![(0.0, 10.0), (5.0, 15.0)]).is_some());
}

#[test]
fn every_scenarios_pictures_follow_their_formats() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut partitions_named = 0;
    for f in scenario_files(&root).unwrap() {
        let scn = Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let r = run_seed(&scn, scn.first_seed, &f.display().to_string());
        let trace: Value = serde_json::from_str(&perfetto_json(&r)).unwrap();
        for (track, s) in slices(&trace) {
            if let Some((a, b)) = partial_overlap(s) {
                panic!(
                    "{}: track {track:?}: slices {a:?} and {b:?} partly overlap",
                    f.display()
                );
            }
        }
        let svg = svg_timeline(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("lease, odd token (token on the bar)").count(),
            1,
            "one legend"
        );
        assert_eq!(
            svg.matches(">wall clock step</text>").count(),
            1,
            "the marks in the legend"
        );
        // Every instant fault the run applied has its mark (one more each: the legend's).
        for (shape, count) in [
            (
                r##"<g stroke="#e69138""##,
                marks(&r, |a| matches!(a, Action::ClockStep(..))),
            ),
            (
                r##"<g stroke="#000000" stroke-width="2">"##,
                marks(&r, |a| {
                    matches!(
                        a,
                        Action::WipeState(_)
                            | Action::RollbackState(..)
                            | Action::CorruptState(_)
                            | Action::StateLoss { .. }
                    )
                }),
            ),
            (r##"fill="#444444">"##, marks(&r, |a| matches!(a, Action::Stop(_)))),
            (
                r##"fill="#a61c9f">"##,
                marks(&r, |a| matches!(a, Action::Forge(_) | Action::Message { .. })),
            ),
        ] {
            assert_eq!(svg.matches(shape).count(), count + 1, "{}: {shape}", f.display());
        }
        if let Some(t) = tenures(&r)
            .iter()
            .find(|t| t.token.is_some() && t.until - t.from > r.figures.sim_time.as_nanos() / 20)
        {
            let label = format!(">t{}</text>", t.token.unwrap());
            assert!(
                svg.contains(&label),
                "{}: a long tenure shows its token {label}",
                f.display()
            );
        }
        if svg.contains("partition P1:") {
            assert!(
                svg.contains(">P1  ") && (svg.contains(" | ") || svg.contains(" -/-&gt; ")),
                "{}",
                f.display()
            );
            partitions_named += 1;
        }
    }
    assert!(partitions_named > 3, "scenarios with partitions name their sides");
}
