//! Test only (`--test-guard`, `--test-fenced-writes`): the applications of `leasehold::probe`
//! beside the agent, as the simulator runs them: a guard (writing under its token to the fenced
//! store's subject, if there is one) and the callbacks. What each guard says is printed, on the
//! agent's own clock, so that `leasehold-sim real` judges it as the simulator does: `guard`
//! lines (`via`, `fencing_token`, `at_local_ns`, `until_local_ns`) and `guard_ended` lines
//! (`via`, `fencing_token`, `at_local_ns`).

use leasehold::events::AgentEvent;
use leasehold::probe::{callbacks_app, guard_app, GuardWord, Report, Via, Write};
use leasehold::{Clock, MembershipHandle, NatsNetwork, Network};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn print(node: &str, w: GuardWord) {
    let via = |v: Via| match v {
        Via::Guard => "guard".to_string(),
        Via::Callbacks => "callbacks".to_string(),
    };
    let ns = |t: Duration| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
    crate::emit(
        node,
        match w {
            GuardWord::Valid {
                via: v,
                token,
                at,
                until,
            } => AgentEvent::Guard {
                via: via(v),
                fencing_token: token,
                at_local_ns: ns(at),
                until_local_ns: ns(until),
            },
            GuardWord::Ended { via: v, token, at } => AgentEvent::GuardEnded {
                via: via(v),
                fencing_token: token,
                at_local_ns: ns(at),
            },
        },
    );
}

/// Spawns both applications over `agent`; the guard writes `{"node","token"}` to `fenced` (a
/// subject on `net`) every beat while it is valid, if given.
pub(crate) fn start(
    agent: &MembershipHandle,
    clock: Arc<dyn Clock>,
    node: String,
    beat: Duration,
    net: NatsNetwork,
    fenced: Option<String>,
) {
    let report: Report = {
        let node = node.clone();
        Arc::new(move |w| print(&node, w))
    };
    let write = fenced.map(|subject| -> Write {
        Arc::new(move |token| {
            let (net, subject) = (net.clone(), subject.clone());
            let body = json!({"node": node, "token": token}).to_string();
            Box::pin(async move {
                let _ = net.publish(&subject, None, body.into()).await;
            })
        })
    });
    tokio::spawn(guard_app(agent.clone(), clock.clone(), beat, report.clone(), write));
    tokio::spawn(callbacks_app(agent.clone(), clock, report));
}
