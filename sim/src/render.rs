//! Pictures of a run: an SVG timeline of who held which lease when (faults shaded, the
//! violation marked) and a Chrome/Perfetto trace-event JSON.

use crate::oracle::secs;
use crate::report::RunReport;
use crate::timeline::{describe_cuts, Span, SpanKind, Timeline};
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
    /// Room under the rows: axis, legend, partition key.
    below: f64,
}

impl Frame {
    fn x(&self, t: u128) -> f64 {
        self.left + self.width * (t as f64 / self.end).min(1.0)
    }
    fn y(&self, row: usize) -> f64 {
        self.top + self.row * row as f64
    }
    fn height(&self) -> f64 {
        self.y(self.rows) + self.below
    }
}

/// One leader's tenure on a node: its claims with one token and incarnation, renewals
/// merged (each renewal's claim starts while the last still runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenure {
    /// Node index.
    pub node: usize,
    /// Which run of the node.
    pub inc: u64,
    /// Fencing token (`lease` only).
    pub token: Option<u64>,
    /// Start (ns, true time).
    pub from: u128,
    /// End of the last claim (ns, true time).
    pub until: u128,
    /// Claims merged into it (1 + renewals).
    pub claims: usize,
}

/// The run's tenures, by node then time.
pub fn tenures(r: &RunReport) -> Vec<Tenure> {
    let mut claims: Vec<_> = r.claims.iter().filter(|c| c.until > c.from).collect();
    claims.sort_by_key(|c| (c.node, c.from));
    let mut out: Vec<Tenure> = Vec::new();
    for c in claims {
        match out.last_mut() {
            Some(t) if t.node == c.node && t.inc == c.inc && t.token == c.token && c.from <= t.until => {
                t.until = t.until.max(c.until);
                t.claims += 1;
            }
            _ => out.push(Tenure {
                node: c.node,
                inc: c.inc,
                token: c.token,
                from: c.from,
                until: c.until,
                claims: 1,
            }),
        }
    }
    out
}

/// The colours of the SVG, each meaning one thing only.
mod colour {
    /// Lease tenures: dark for an even token, light for an odd one, so that neighbours stand
    /// apart.
    pub(super) const LEASE: [&str; 2] = ["#1c4587", "#6d9eeb"];
    /// A step of a node's wall clock.
    pub(super) const CLOCK_STEP: &str = "#e69138";
    /// A node's state file wiped, rolled back or made unreadable.
    pub(super) const STATE_LOSS: &str = "#000000";
    /// A graceful stop (the down band follows).
    pub(super) const STOP: &str = "#444444";
    /// A forged message, or one message dropped, delayed or duplicated.
    pub(super) const MESSAGE: &str = "#a61c9f";
    /// Cut routes (the whole cluster's band).
    pub(super) const PARTITION: &str = "#f4cccc";
    /// A node down.
    pub(super) const DOWN: &str = "#999999";
    /// A node paused.
    pub(super) const PAUSED: &str = "#ffe599";
    /// A node's host suspended.
    pub(super) const SUSPENDED: &str = "#b4a7d6";
    /// The first violation.
    pub(super) const VIOLATION: &str = "#cc0000";
}

/// The SVG timeline: one row per node over true time.
pub fn svg_timeline(r: &RunReport) -> String {
    let spans = Timeline::new(&r.applied, r.nodes.len()).spans(r.figures.sim_time.as_nanos());
    let partitions: Vec<&Span> = spans.iter().filter(|s| s.kind == SpanKind::Partition).collect();
    let keyed = partitions.len().min(MAX_KEYED);
    let f = Frame {
        left: 70.0,
        top: 40.0,
        width: 1000.0,
        row: 28.0,
        end: r.figures.sim_time.as_nanos().max(1) as f64,
        rows: r.nodes.len(),
        below: 84.0 + 14.0 * (keyed + usize::from(partitions.len() > MAX_KEYED)) as f64,
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
    fault_bands(&mut s, &f, &spans, r);
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
    tenure_bars(&mut s, &f, r);
    marks(&mut s, &f, r);
    axis(&mut s, &f, r);
    legend(&mut s, &f, &partitions, &r.nodes);
    s.push_str("</svg>\n");
    s
}

/// Partitions listed by number under the picture; more are counted, not listed.
const MAX_KEYED: usize = 12;

/// Shaded spans: partitions across every row (numbered), a node's downtime, pauses and
/// suspensions on its own.
fn fault_bands(s: &mut String, f: &Frame, spans: &[Span], r: &RunReport) {
    let mut k = 0;
    for sp in spans {
        let (fill, y, h, what) = match (sp.kind, sp.node) {
            (SpanKind::Partition, _) => {
                k += 1;
                let what = format!("partition P{k}: {}", describe_cuts(&sp.cuts, &r.nodes));
                (colour::PARTITION, f.top, f.row * f.rows as f64, what)
            }
            (SpanKind::Down, Some(i)) => (colour::DOWN, f.y(i), f.row, "down".to_string()),
            (SpanKind::Paused, Some(i)) => (colour::PAUSED, f.y(i), f.row, "paused".to_string()),
            (SpanKind::Suspended, Some(i)) => (colour::SUSPENDED, f.y(i), f.row, "suspended".to_string()),
            _ => continue,
        };
        let (x, w) = (f.x(sp.from), (f.x(sp.to) - f.x(sp.from)).max(0.5));
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="{h}" fill="{fill}"><title>{} {}–{}</title></rect>"#,
            xml(&what),
            secs(sp.from),
            secs(sp.to)
        );
        if sp.kind == SpanKind::Partition {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#990000">P{k}</text>"##,
                x + 1.0,
                f.top - 3.0
            );
        }
    }
}

/// One bar per tenure on its node's row, its token written on it when there is room.
fn tenure_bars(s: &mut String, f: &Frame, r: &RunReport) {
    for (k, t) in tenures(r).iter().enumerate() {
        let fill = colour::LEASE[t.token.map_or(k, |x| x as usize) % 2];
        let y = f.y(t.node) + 5.0;
        let (x, w) = (f.x(t.from), (f.x(t.until) - f.x(t.from)).max(0.5));
        let label = t.token.map_or("leader".to_string(), |x| format!("t{x}"));
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="{}" fill="{fill}"><title>{} incarnation {} {label} held {}–{} ({} claims)</title></rect>"#,
            f.row - 10.0,
            xml(&r.nodes[t.node]),
            t.inc,
            secs(t.from),
            secs(t.until),
            t.claims
        );
        if w >= 7.0 * label.len() as f64 + 4.0 {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="white">{label}</text>"#,
                x + 2.0,
                y + f.row * 0.5
            );
        }
    }
}

/// What a mark looks like.
#[derive(Clone, Copy)]
enum Mark {
    /// A tick through the row with a dot on top.
    ClockStep,
    /// A cross.
    StateLoss,
    /// A small square.
    Stop,
    /// A diamond.
    Message,
}

/// Draws mark `m` at `x` on the row starting at `y` (height `h`), with its hover text.
fn mark(s: &mut String, m: Mark, x: f64, y: f64, h: f64, title: &str) {
    let title = xml(title);
    let _ = match m {
        Mark::ClockStep => writeln!(
            s,
            r#"<g stroke="{c}" fill="{c}"><title>{title}</title><line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke-width="2"/><circle cx="{x:.1}" cy="{:.1}" r="2.5"/></g>"#,
            y + 2.0,
            y + h - 2.0,
            y + 3.0,
            c = colour::CLOCK_STEP
        ),
        Mark::StateLoss => writeln!(
            s,
            r#"<g stroke="{c}" stroke-width="2"><title>{title}</title><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/></g>"#,
            x - 4.0,
            x + 4.0,
            y + h / 2.0 - 4.0,
            y + h / 2.0 + 4.0,
            x - 4.0,
            x + 4.0,
            y + h / 2.0 + 4.0,
            y + h / 2.0 - 4.0,
            c = colour::STATE_LOSS
        ),
        Mark::Stop => writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="7" height="7" fill="{}"><title>{title}</title></rect>"#,
            x - 3.5,
            y + h / 2.0 - 3.5,
            colour::STOP
        ),
        Mark::Message => writeln!(
            s,
            r#"<path d="M{x:.1} {:.1} l4 4 l-4 4 l-4 -4 z" fill="{}"><title>{title}</title></path>"#,
            y + h / 2.0 - 4.0,
            colour::MESSAGE
        ),
    };
}

/// Instant faults as marks on their node's row (a forged message above every row): clock
/// steps, state losses, graceful stops, forged and targeted messages.
fn marks(s: &mut String, f: &Frame, r: &RunReport) {
    use crate::faults::Action;
    for e in &r.applied {
        let (m, row) = match &e.action {
            Action::ClockStep(i, _) => (Mark::ClockStep, Some(*i)),
            Action::WipeState(i) | Action::RollbackState(i, _) | Action::CorruptState(i) => (Mark::StateLoss, Some(*i)),
            Action::StateLoss { node, .. } => (Mark::StateLoss, Some(*node)),
            Action::Stop(i) => (Mark::Stop, Some(*i)),
            Action::Forge(_) => (Mark::Message, None),
            Action::Message { to, .. } => (Mark::Message, Some(*to)),
            _ => continue,
        };
        // Its words on hover are the trace's.
        let title = format!("{} at {}", e.action.describe(&r.nodes, None), secs(e.at.as_nanos()));
        let x = f.x(e.at.as_nanos());
        match row.filter(|i| *i < f.rows) {
            Some(i) => mark(s, m, x, f.y(i), f.row, &title),
            None => mark(s, m, x, f.top - 22.0, 12.0, &title),
        }
    }
}

/// The violation's line and the time axis.
fn axis(s: &mut String, f: &Frame, r: &RunReport) {
    let bottom = f.y(f.rows);
    if let Some(v) = r.violations.first() {
        let vx = f.x(v.at);
        let _ = writeln!(
            s,
            r#"<line x1="{vx:.1}" x2="{vx:.1}" y1="{}" y2="{:.1}" stroke="{}" stroke-width="2"/>"#,
            f.top - 8.0,
            bottom + 4.0,
            colour::VIOLATION
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{}">{}</text>"#,
            (vx - 60.0).max(f.left),
            bottom + 30.0,
            colour::VIOLATION,
            xml(&v.kind.to_string())
        );
    }
    for k in 0..=10u32 {
        let t = (f.end as u128) * u128::from(k) / 10;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10">{:.1}s</text>"#,
            f.x(t) - 10.0,
            bottom + 14.0,
            t as f64 / 1e9
        );
    }
}

/// The one legend: a swatch per colour, then the numbered partitions and who each cut off.
fn legend(s: &mut String, f: &Frame, partitions: &[&Span], ids: &[String]) {
    let y = f.y(f.rows) + 48.0;
    let items = [
        (colour::LEASE[0], "lease, even token"),
        (colour::LEASE[1], "lease, odd token (token on the bar)"),
        (colour::PARTITION, "partition Pn"),
        (colour::DOWN, "down"),
        (colour::PAUSED, "paused"),
        (colour::SUSPENDED, "suspended"),
        (colour::VIOLATION, "violation"),
    ];
    let mut x = f.left;
    for (fill, what) in items {
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="10" fill="{fill}"/><text x="{:.1}" y="{y:.1}" font-size="11">{what}</text>"#,
            y - 9.0,
            x + 16.0
        );
        x += 28.0 + 7.0 * what.len() as f64;
    }
    // The marks, on a line of their own.
    let y = y + 14.0;
    let mut x = f.left + 4.0;
    for (m, what) in [
        (Mark::ClockStep, "wall clock step"),
        (Mark::StateLoss, "state file wiped, rolled back or unreadable"),
        (Mark::Stop, "graceful stop"),
        (Mark::Message, "message forged, dropped, delayed or duplicated"),
    ] {
        mark(s, m, x, y - 11.0, 12.0, what);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{y:.1}" font-size="11">{what}</text>"#,
            x + 12.0
        );
        x += 30.0 + 7.0 * what.len() as f64;
    }
    let y = y - 14.0;
    for (k, p) in partitions.iter().take(MAX_KEYED).enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" font-size="11">P{}  {:.3}s–{:.3}s  {}</text>"#,
            f.left,
            y + 14.0 * (k + 2) as f64,
            k + 1,
            p.from as f64 / 1e9,
            p.to as f64 / 1e9,
            xml(&describe_cuts(&p.cuts, ids))
        );
    }
    if partitions.len() > MAX_KEYED {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" font-size="11">... and {} more partitions (hover a band for its sides)</text>"#,
            f.left,
            y + 14.0 * (MAX_KEYED + 2) as f64,
            partitions.len() - MAX_KEYED
        );
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Chrome / Perfetto trace-event JSON: one track per node with its tenures as complete
/// slices (renewals as instants inside them), faults and violations as global instants.
/// Slices on a track never partly overlap, as the format requires: a tenure that would
/// (a restarted node's new run beside the end of its old belief) goes on a second track.
pub fn perfetto_json(r: &RunReport) -> String {
    let mut events = Vec::new();
    let mut tracks: Vec<(usize, u128)> = Vec::new(); // (tid, end of its last slice)
    let mut names = Vec::new();
    for (i, id) in r.nodes.iter().enumerate() {
        tracks.push((i + 1, 0));
        names.push((i + 1, id.clone()));
    }
    let mut extra = r.nodes.len() + 1;
    for t in tenures(r) {
        let tid = if tracks[t.node].1 <= t.from {
            tracks[t.node].1 = t.until;
            tracks[t.node].0
        } else {
            names.push((extra, format!("{} (overlapping)", r.nodes[t.node])));
            extra += 1;
            extra - 1
        };
        events.push(json!({
            "name": t.token.map_or("leader".to_string(), |x| format!("lease token {x}")),
            "ph": "X", "pid": 1, "tid": tid,
            "ts": t.from as f64 / 1000.0, "dur": (t.until - t.from) as f64 / 1000.0,
            "args": {"incarnation": t.inc, "claims": t.claims}
        }));
    }
    for c in r.claims.iter().filter(|c| c.until > c.from) {
        events.push(
            json!({"name": "claim", "ph": "i", "s": "t", "pid": 1, "tid": c.node + 1, "ts": c.from as f64 / 1000.0}),
        );
    }
    for (tid, name) in names {
        events.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}}));
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
    // Names built whole: `with_extension` would cut a dotted stem (`lease.v2`) short.
    let name = |ext: &str| dir.join(format!("{stem}-seed{}.{ext}", r.seed));
    let files = [
        (name("trace.txt"), format!("{}\n{}", r.trace.render(), r.describe())),
        (name("svg"), svg_timeline(r)),
        (name("perfetto.json"), perfetto_json(r)),
    ];
    let mut out = Vec::new();
    for (p, text) in files {
        std::fs::write(&p, text)?;
        out.push(p);
    }
    Ok(out)
}
