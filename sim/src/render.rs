//! Pictures of a run: an SVG timeline of who held which lease when (faults shaded, the
//! violation marked) and a Chrome/Perfetto trace-event JSON.

use crate::report::RunReport;
use crate::timeline::{SpanKind, Timeline};
use serde_json::json;
use std::fmt::Write as _;

/// The geometry of the SVG timeline: one row per node, true time across.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    row: f64,
    end: f64,
    rows: usize,
}

impl Frame {
    fn x(&self, t: u128) -> f64 {
        self.left + self.width * (t as f64 / self.end).min(1.0)
    }
    fn y(&self, row: usize) -> f64 {
        self.top + self.row * row as f64
    }
    fn height(&self) -> f64 {
        self.y(self.rows) + 40.0
    }
}

/// The SVG timeline: one row per node over true time.
pub fn svg_timeline(r: &RunReport) -> String {
    let f = Frame {
        left: 70.0,
        top: 40.0,
        width: 1000.0,
        row: 28.0,
        end: r.figures.sim_time.as_nanos().max(1) as f64,
        rows: r.nodes.len(),
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="monospace" font-size="12">"#,
        f.left + f.width + 20.0,
        f.height()
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18">{} — seed {} — lease holders over true time</text>"#,
        f.left,
        xml(&r.scenario),
        r.seed
    );
    fault_bands(&mut s, &f, r);
    for (i, id) in r.nodes.iter().enumerate() {
        let y = f.y(i);
        let _ = writeln!(
            s,
            r##"<text x="4" y="{:.1}">{}</text><line x1="{}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#dddddd"/>"##,
            y + f.row * 0.65,
            xml(id),
            f.left,
            f.left + f.width,
            y + f.row,
            y + f.row
        );
    }
    claim_bars(&mut s, &f, r);
    axis(&mut s, &f, r);
    s.push_str("</svg>\n");
    s
}

/// Shaded spans: partitions across every row, a node's downtime and pauses on its own.
fn fault_bands(s: &mut String, f: &Frame, r: &RunReport) {
    for sp in Timeline::new(&r.applied, f.rows).spans(r.figures.sim_time.as_nanos()) {
        let (fill, y, h, kind) = match (sp.kind, sp.node) {
            (SpanKind::Partition, _) => ("#f4cccc", f.top, f.row * f.rows as f64, "partition"),
            (SpanKind::Down, Some(i)) => ("#999999", f.y(i), f.row, "down"),
            (SpanKind::Paused, Some(i)) => ("#ffe599", f.y(i), f.row, "paused"),
            _ => continue,
        };
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="{h}" fill="{fill}" opacity="0.6"><title>{kind}</title></rect>"#,
            f.x(sp.from),
            (f.x(sp.to) - f.x(sp.from)).max(0.5)
        );
    }
}

/// One bar per claim, coloured by token, on its node's row.
fn claim_bars(s: &mut String, f: &Frame, r: &RunReport) {
    for c in r.claims.iter().filter(|c| c.until > c.from) {
        let hue = (c.token.unwrap_or(c.inc) * 47 % 360) as u32;
        let y = f.y(c.node) + 5.0;
        let label = c.token.map_or(String::new(), |t| format!("token {t}"));
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="{}" fill="hsl({hue},60%,55%)" opacity="0.85"><title>{} {label}</title></rect>"#,
            f.x(c.from),
            (f.x(c.until) - f.x(c.from)).max(0.5),
            f.row - 10.0,
            xml(&c.to_string())
        );
    }
}

/// The violation's line, the time axis and the legend.
fn axis(s: &mut String, f: &Frame, r: &RunReport) {
    let bottom = f.y(f.rows);
    if let Some(v) = r.violations.first() {
        let vx = f.x(v.at);
        let _ = writeln!(
            s,
            r#"<line x1="{vx:.1}" x2="{vx:.1}" y1="{}" y2="{:.1}" stroke="red" stroke-width="2"/>"#,
            f.top - 8.0,
            bottom + 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="red">{}</text>"#,
            (vx - 60.0).max(f.left),
            bottom + 18.0,
            xml(&v.kind.to_string())
        );
    }
    for k in 0..=10u32 {
        let t = (f.end as u128) * u128::from(k) / 10;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10">{:.1}s</text>"#,
            f.x(t) - 10.0,
            f.height() - 8.0,
            t as f64 / 1e9
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{:.1}" font-size="10">red band: partition, grey: down, yellow: paused</text>"#,
        f.left + f.width - 300.0,
        f.height() - 22.0
    );
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
    for e in r.trace.events.iter().filter(|e| e.what.starts_with("fault")) {
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
            format!("{}\n{}", r.trace.render(), r.describe()),
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
