//! Pictures of a run: an SVG timeline of who held which lease when (faults shaded, the
//! violation marked) and a Chrome/Perfetto trace-event JSON.

use crate::nemesis::Action;
use crate::run::RunReport;
use serde_json::json;
use std::fmt::Write as _;

/// Shaded intervals: (row or None for all rows, from ns, to ns, kind).
fn fault_spans(r: &RunReport) -> Vec<(Option<usize>, u128, u128, &'static str)> {
    let end = r.sim_time.as_nanos();
    let mut out = Vec::new();
    let mut cut_since: Option<u128> = None;
    let mut down: Vec<Option<u128>> = vec![None; r.nodes.len()];
    let mut paused: Vec<Option<u128>> = vec![None; r.nodes.len()];
    for e in &r.applied {
        let t = e.at.as_nanos();
        match &e.action {
            Action::Cut(links) if !links.is_empty() => {
                if let Some(s) = cut_since.take() {
                    out.push((None, s, t, "partition"));
                }
                cut_since = Some(t);
            }
            Action::Cut(_) | Action::Heal => {
                if let Some(s) = cut_since.take() {
                    out.push((None, s, t, "partition"));
                }
            }
            Action::Kill(i) => down[*i] = Some(t),
            Action::Restart(i) => {
                if let Some(s) = down[*i].take() {
                    out.push((Some(*i), s, t, "down"));
                }
            }
            Action::Pause(i) => paused[*i] = Some(t),
            Action::Resume(i) => {
                if let Some(s) = paused[*i].take() {
                    out.push((Some(*i), s, t, "paused"));
                }
            }
            _ => {}
        }
    }
    if let Some(s) = cut_since {
        out.push((None, s, end, "partition"));
    }
    for (i, d) in down.iter().enumerate() {
        if let Some(s) = d {
            out.push((Some(i), *s, end, "down"));
        }
    }
    for (i, p) in paused.iter().enumerate() {
        if let Some(s) = p {
            out.push((Some(i), *s, end, "paused"));
        }
    }
    out
}

/// The SVG timeline: one row per node over true time.
pub fn svg_timeline(r: &RunReport) -> String {
    let (left, top, width, row) = (70.0, 40.0, 1000.0, 28.0);
    let end = r.sim_time.as_nanos().max(1) as f64;
    let x = |t: u128| left + width * (t as f64 / end).min(1.0);
    let n = r.nodes.len();
    let height = top + row * n as f64 + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="monospace" font-size="12">"#,
        left + width + 20.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18">{} — seed {} — lease holders over true time</text>"#,
        xml(&r.scenario),
        r.seed
    );
    for (node, from, to, kind) in fault_spans(r) {
        let (fill, y, h) = match (kind, node) {
            ("partition", _) => ("#f4cccc", top, row * n as f64),
            ("down", Some(i)) => ("#999999", top + row * i as f64, row),
            (_, Some(i)) => ("#ffe599", top + row * i as f64, row),
            _ => continue,
        };
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="{h}" fill="{fill}" opacity="0.6"><title>{kind}</title></rect>"#,
            x(from),
            (x(to) - x(from)).max(0.5)
        );
    }
    for (i, id) in r.nodes.iter().enumerate() {
        let y = top + row * i as f64;
        let _ = writeln!(
            s,
            r##"<text x="4" y="{:.1}">{}</text><line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#dddddd"/>"##,
            y + row * 0.65,
            xml(id),
            left + width,
            y + row,
            y + row
        );
    }
    for c in &r.claims {
        if c.until <= c.from {
            continue;
        }
        let hue = (c.token.unwrap_or(c.inc) * 47 % 360) as u32;
        let y = top + row * c.node as f64 + 5.0;
        let label = c.token.map_or(String::new(), |t| format!("token {t}"));
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="{}" fill="hsl({hue},60%,55%)" opacity="0.85"><title>{} {label}</title></rect>"#,
            x(c.from),
            (x(c.until) - x(c.from)).max(0.5),
            row - 10.0,
            xml(&c.to_string())
        );
    }
    if let Some(v) = r.violations.first() {
        let vx = x(v.at);
        let _ = writeln!(
            s,
            r#"<line x1="{vx:.1}" x2="{vx:.1}" y1="{}" y2="{:.1}" stroke="red" stroke-width="2"/>"#,
            top - 8.0,
            top + row * n as f64 + 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="red">{}</text>"#,
            (vx - 60.0).max(left),
            top + row * n as f64 + 18.0,
            xml(&v.kind.to_string())
        );
    }
    for k in 0..=10u32 {
        let t = (end as u128) * u128::from(k) / 10;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10">{:.1}s</text>"#,
            x(t) - 10.0,
            height - 8.0,
            t as f64 / 1e9
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{:.1}" font-size="10">red band: partition, grey: down, yellow: paused</text>"#,
        left + width - 300.0,
        height - 22.0
    );
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Chrome / Perfetto trace-event JSON: claims as spans per node, faults as instants.
pub fn perfetto_json(r: &RunReport) -> String {
    let mut events = Vec::new();
    for (i, id) in r.nodes.iter().enumerate() {
        events.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": i + 1, "args": {"name": id}}));
    }
    for c in &r.claims {
        if c.until > c.from {
            events.push(json!({
                "name": c.token.map_or("leader".to_string(), |t| format!("lease token {t}")),
                "ph": "X", "pid": 1, "tid": c.node + 1,
                "ts": c.from as f64 / 1000.0, "dur": (c.until - c.from) as f64 / 1000.0,
                "args": {"incarnation": c.inc}
            }));
        }
    }
    for e in r.trace.iter().filter(|e| e.what.starts_with("fault")) {
        events.push(json!({"name": e.what, "ph": "i", "s": "g", "pid": 1, "tid": 0, "ts": e.at as f64 / 1000.0}));
    }
    for v in &r.violations {
        events.push(json!({"name": format!("VIOLATION: {}", v.kind), "ph": "i", "s": "g", "pid": 1, "tid": 0, "ts": v.at as f64 / 1000.0}));
    }
    json!({"traceEvents": events, "displayTimeUnit": "ms"}).to_string()
}

/// Writes `<stem>-seed<S>.trace.txt`, `.svg` and `.perfetto.json` for a run into `dir`.
pub fn write_outputs(r: &RunReport, stem: &str, dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let base = dir.join(format!("{stem}-seed{}", r.seed));
    let files = [
        (
            base.with_extension("trace.txt"),
            format!("{}\n{}", crate::trace::render(&r.trace), r.describe()),
        ),
        (base.with_extension("svg"), svg_timeline(r)),
        (base.with_extension("perfetto.json"), perfetto_json(r)),
    ];
    let mut out = Vec::new();
    for (p, text) in files {
        std::fs::write(&p, text)?;
        out.push(p);
    }
    Ok(out)
}
