//! Test only (`--test-guard`, `--test-fenced-writes`): the application beside the agent, on the
//! public API only, as the simulator's is: a guard from `leadership()`, read every beat and at
//! every change until `lost()` resolves (writing under its token to the fenced store's subject,
//! if there is one), and the callbacks of `run_callbacks`. What each guard says is printed, on
//! the agent's own clock, so that `leasehold-sim real` judges it as the simulator does:
//! `guard` lines (`via`, `fencing_token`, `at_local_ns`, `until_local_ns`) and `guard_ended`
//! lines (`via`, `fencing_token`, `at_local_ns`).

use futures::future::{select, Either};
use leasehold::{BoxFuture, Clock, LeaderCallbacks, Leadership, MembershipHandle, NatsNetwork, Network};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Where the guard application writes: the fenced store's subject.
pub(crate) struct Writes {
    pub(crate) net: NatsNetwork,
    pub(crate) subject: String,
}

fn valid(node: &str, via: &str, token: Option<u64>, at: Duration, until: Duration) {
    crate::emit(
        json!({"event": "guard", "node": node, "via": via, "fencing_token": token,
        "at_local_ns": at.as_nanos() as u64, "until_local_ns": until.as_nanos() as u64}),
    );
}

fn ended(node: &str, via: &str, token: Option<u64>, at: Duration) {
    crate::emit(
        json!({"event": "guard_ended", "node": node, "via": via, "fencing_token": token,
        "at_local_ns": at.as_nanos() as u64}),
    );
}

/// Runs the guard application until the agent stops.
pub(crate) async fn guard_app(
    agent: MembershipHandle,
    clock: Arc<dyn Clock>,
    node: String,
    beat: Duration,
    writes: Option<Writes>,
) {
    while let Some(lease) = agent.leadership().await {
        let token = lease.token();
        let (agent, clock, lease_, writes, node) = (&agent, &clock, &lease, &writes, &node);
        let work = async move {
            loop {
                // Registered before the guard is read, so no change is missed.
                let changed = agent.changed();
                let at = clock.now();
                let left = lease_.remaining();
                if left.is_zero() {
                    return futures::future::pending::<()>().await;
                }
                valid(node, "guard", token, at, at + left);
                if let (Some(w), Some(t)) = (writes.as_ref(), token) {
                    let body = json!({"node": node, "token": t}).to_string();
                    let _ = w.net.publish(&w.subject, None, body.into()).await;
                }
                let _ = select(Box::pin(changed), clock.sleep(beat)).await;
            }
        };
        if let Either::Right(..) = select(Box::pin(work), Box::pin(lease.lost())).await {
            ended(node, "guard", token, clock.now());
        }
    }
}

/// Runs the callbacks application until the agent stops.
pub(crate) async fn callbacks_app(agent: MembershipHandle, clock: Arc<dyn Clock>, node: String) {
    leasehold::run_callbacks(agent, Reporter { clock, node }).await;
}

struct Reporter {
    clock: Arc<dyn Clock>,
    node: String,
}

/// Prints the end of a leading future when it is dropped.
struct OnDrop {
    clock: Arc<dyn Clock>,
    node: String,
    token: Option<u64>,
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        ended(&self.node, "callbacks", self.token, self.clock.now());
    }
}

impl LeaderCallbacks for Reporter {
    fn on_started_leading(&self, lease: Leadership) -> BoxFuture<'static, ()> {
        let at = self.clock.now();
        let left = lease.remaining();
        if !left.is_zero() {
            valid(&self.node, "callbacks", lease.token(), at, at + left);
        }
        let on_drop = OnDrop {
            clock: self.clock.clone(),
            node: self.node.clone(),
            token: lease.token(),
        };
        Box::pin(async move {
            let _ended = on_drop;
            futures::future::pending::<()>().await
        })
    }

    fn on_stopped_leading(&self) {}

    fn on_new_leader(&self, _leader: Option<String>) {}
}
