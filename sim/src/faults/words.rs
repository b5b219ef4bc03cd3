//! The trace text of every fault action.

use super::Action;
use crate::scenario::secs;

impl Action {
    /// The action as a trace line; `leader` is who an `IsolateLeader` isolates.
    pub fn describe(&self, nodes: &[String], leader: Option<usize>) -> String {
        let name = |i: &usize| nodes[*i].clone();
        match self {
            Action::Partition { .. }
            | Action::IsolateLeader { .. }
            | Action::Bridge { .. }
            | Action::OneWay { .. }
            | Action::Cut(_) => self.route_words(nodes, leader),
            Action::Heal => "fault heal".into(),
            Action::Kill(i) => format!("fault kill {}", name(i)),
            Action::Restart(i) => format!("fault restart {}", name(i)),
            Action::Pause(i) => format!("fault pause {}", name(i)),
            Action::Resume(i) => format!("fault resume {}", name(i)),
            Action::Stop(i) => format!("fault stop {}", name(i)),
            Action::Suspend(i) => format!("fault suspend {}", name(i)),
            Action::Wake(i) => format!("fault wake {}", name(i)),
            Action::ClockStep(i, by) => format!(
                "fault clock step {} by {}{}",
                name(i),
                if *by < 0 { "-" } else { "+" },
                secs(by.unsigned_abs())
            ),
            Action::Drift(i, ppm) => format!("fault drift {} {ppm}ppm", name(i)),
            Action::Loss(l) => format!("fault loss {l}"),
            Action::Latency(r) => format!("fault latency {:?}..{:?}", r.lo, r.hi),
            Action::WipeState(i) => format!("fault wipe state {}", name(i)),
            Action::RollbackState(i, to) => match to {
                Some(k) => format!("fault roll back state {} to save {k}", name(i)),
                None => format!("fault roll back state {}", name(i)),
            },
            Action::CorruptState(i) => format!("fault corrupt state {}", name(i)),
            Action::Clone(i) => format!("fault clone {} (a second agent with its id and state)", name(i)),
            Action::Freeze(i) => format!("fault freeze {} (its process and every clock stop)", name(i)),
            Action::StateLoss { node, wipe, .. } => format!(
                "fault state loss {} ({})",
                name(node),
                if *wipe { "wiped" } else { "rolled back" }
            ),
            Action::Replay(i, w) => format!("fault replay {} last {w:?}", name(i)),
            Action::SlowConsumer(i, true) => format!("fault slow consumer {}", name(i)),
            Action::SlowConsumer(i, false) => format!("fault consumer caught up {}", name(i)),
            Action::Forge(p) => format!("fault forge #{p}"),
            Action::Preempt(i, by) => format!("fault preempt {} for {by:?} (its next clock read)", name(i)),
            Action::Congest(i, Some(d)) => format!("fault congest {} (each publish handed over {d:?} late)", name(i)),
            Action::Congest(i, None) => format!("fault congestion over {}", name(i)),
            Action::Lag(i, Some(d)) => format!("fault lag {} (each message to or from it {d:?} later)", name(i)),
            Action::Lag(i, None) => format!("fault lag over {}", name(i)),
            Action::Resign(i) => format!("resign {} (its application gives the lease up)", name(i)),
            Action::Campaign(i) => format!("campaign {} (its application takes part again)", name(i)),
            Action::ServerDown(i, true) => format!("fault server down {} (its agent runs on, disconnected)", name(i)),
            Action::ServerDown(i, false) => format!("fault server up {} (its agent reconnects)", name(i)),
            Action::FreezeConnection(i, true) => format!(
                "fault freeze connection {} (nothing arrives, nothing fails, until its pings time out)",
                name(i)
            ),
            Action::FreezeConnection(i, false) => format!("fault thaw connection {}", name(i)),
            Action::Resize(i, size) => format!("resize {} (cluster_size {size} from its next start)", name(i)),
            Action::Message { .. } => self.message_words(nodes),
        }
    }
}

impl Action {
    /// A change of routes as a trace line; `leader` is who an `IsolateLeader` isolates.
    fn route_words(&self, nodes: &[String], leader: Option<usize>) -> String {
        let name = |i: &usize| nodes[*i].clone();
        let names = |v: &Vec<usize>| v.iter().map(name).collect::<Vec<_>>().join(",");
        match self {
            Action::Partition { groups, label } => format!(
                "fault partition ({label}) {}",
                groups
                    .iter()
                    .map(|g| format!("[{}]", names(g)))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
            Action::IsolateLeader { fallback } => format!(
                "fault partition (isolate leader) [{}]",
                name(&leader.unwrap_or(*fallback))
            ),
            Action::Bridge { a, b, bridge } => format!(
                "fault partition (bridge {}) [{}] | [{}]",
                name(bridge),
                names(a),
                names(b)
            ),
            Action::OneWay { from, to } => format!("fault one-way cut [{}] -> [{}]", names(from), names(to)),
            Action::Cut(links) => format!(
                "fault cut {}",
                links
                    .iter()
                    .map(|(a, b)| format!("{}->{}", name(a), name(b)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            _ => String::new(),
        }
    }

    /// A targeted message fault as a trace line.
    fn message_words(&self, nodes: &[String]) -> String {
        let Action::Message {
            fault,
            from,
            to,
            kind,
            nth,
        } = self
        else {
            return String::new();
        };
        let what = match fault {
            crate::scenario::MessageFault::Drop => "drop",
            crate::scenario::MessageFault::Delay => "delay",
            crate::scenario::MessageFault::Duplicate => "duplicate",
        };
        let which = if *nth > 0 { format!(" #{nth}") } else { String::new() };
        format!("fault {what} {}{which} {}->{}", kind.name(), nodes[*from], nodes[*to])
    }
}
