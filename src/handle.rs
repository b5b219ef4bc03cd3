//! The application's view of a running agent: [`MembershipHandle`] (leader, members,
//! history, notices, stop) and the state it shares with the driver.

use crate::election::Notice;
use crate::wire::AgentLoc;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{info, warn};

/// The leader as one agent sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderStatus {
    /// The leader's ID, if one is known.
    pub leader: Option<String>,
    /// Whether this agent holds the lease (check [`LeaderStatus::lease_deadline`] against the
    /// clock before acting: the lease may have run out since).
    pub is_leader: bool,
    /// The fencing token of the leader's lease (`lease` only): pass it downstream so stale
    /// leaders can be rejected.
    pub fencing_token: Option<u64>,
    /// When this agent's lease ends, on its own monotonic clock ([`Clock::now`]).
    pub lease_deadline: Option<Duration>,
}

impl LeaderStatus {
    /// Whether this agent may act as leader at monotonic time `now`.
    pub fn is_leader_at(&self, now: Duration) -> bool {
        self.is_leader && self.lease_deadline.is_some_and(|d| now < d)
    }
}

/// One entry of the leadership history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadershipRecord {
    /// The leader elected.
    pub leader: AgentLoc,
    /// Its fencing token (`lease` only).
    pub token: Option<u64>,
    /// When this agent learned of it (local monotonic).
    pub at: Duration,
}

/// Counters of things that went wrong and were survived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages dropped because they were malformed or too large.
    pub malformed: u64,
    /// Publishes that failed (the network was down or refused them).
    pub publish_errors: u64,
    /// Saves to storage that failed (the promise they guarded was not made).
    pub storage_errors: u64,
    /// Notices dropped because a watcher did not keep up.
    pub notices_dropped: u64,
    /// Well-formed messages dropped because a value was out of its documented range.
    pub out_of_range: u64,
    /// Messages dropped because they were not sealed with a cluster key this agent has
    /// (unsealed, unknown key, or a bad MAC); only with [`Membership::with_cluster_keys`](crate::Membership::with_cluster_keys).
    pub unauthenticated: u64,
}

#[derive(Debug, Default)]
struct SharedInner {
    status: LeaderStatus,
    members: BTreeMap<String, AgentLoc>,
    history: VecDeque<LeadershipRecord>,
    watchers: Vec<mpsc::Sender<(Duration, Notice)>>,
    stop: Option<oneshot::Sender<()>>,
    done: bool,
    done_waiters: Vec<oneshot::Sender<()>>,
    stats: Stats,
}

/// What the driver and every handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<SharedInner>,
    history_size: usize,
}

impl Shared {
    /// Shared state for an agent that keeps `history_size` leadership records.
    pub(crate) fn new(history_size: usize, stop: oneshot::Sender<()>) -> Arc<Self> {
        Arc::new(Shared {
            inner: Mutex::new(SharedInner {
                stop: Some(stop),
                ..Default::default()
            }),
            history_size,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SharedInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a survived failure.
    pub(crate) fn count(&self, what: impl FnOnce(&mut Stats)) {
        what(&mut self.lock().stats);
    }

    /// The live members known, by ID.
    pub(crate) fn members(&self) -> Vec<AgentLoc> {
        self.lock().members.values().cloned().collect()
    }

    /// Applies a notice to the shared view, then hands it to every watcher (a watcher whose
    /// queue is full loses it, counted). `now` is the agent's monotonic clock.
    pub(crate) fn notice(&self, now: Duration, n: Notice) {
        let mut g = self.lock();
        match &n {
            Notice::Leader {
                leader,
                is_me,
                token,
                until,
            } => {
                info!(leader = ?leader, is_me, token = ?token, "leader changed");
                g.status = LeaderStatus {
                    leader: leader.clone(),
                    is_leader: *is_me,
                    fencing_token: *token,
                    lease_deadline: *until,
                };
            }
            Notice::Claim { until, .. } if g.status.is_leader => g.status.lease_deadline = Some(*until),
            Notice::Elected { leader, token } => {
                if g.history.len() >= self.history_size {
                    g.history.pop_front();
                }
                g.history.push_back(LeadershipRecord {
                    leader: leader.clone(),
                    token: *token,
                    at: now,
                });
            }
            Notice::MemberAdded(loc) => {
                info!(member = %loc.id, "member added");
                g.members.insert(loc.id.clone(), loc.clone());
            }
            Notice::MemberLost(loc) => {
                info!(member = %loc.id, "member lost");
                g.members.remove(&loc.id);
            }
            Notice::ConfigMismatch { peer, ours, theirs } => {
                warn!(
                    peer = %peer,
                    ours = format_args!("{ours:016x}"),
                    theirs = format_args!("{theirs:016x}"),
                    "config_mismatch: a peer runs with different cluster_size, lease_time or max_drift_ppm; neither will promise to the other"
                );
            }
            _ => {}
        }
        let mut dropped = 0;
        g.watchers.retain_mut(|w| match w.try_send((now, n.clone())) {
            Ok(()) => true,
            Err(e) if e.is_disconnected() => false,
            Err(_) => {
                dropped += 1;
                true
            }
        });
        g.stats.notices_dropped += dropped;
    }

    /// Marks the agent shut down: closes every watcher and wakes everyone waiting in `stop`.
    pub(crate) fn finish(&self) {
        let waiters = {
            let mut g = self.lock();
            g.done = true;
            g.watchers.clear();
            std::mem::take(&mut g.done_waiters)
        };
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// An application's view of a running agent: leader, membership, history, notices, stop.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct MembershipHandle {
    pub(crate) shared: Arc<Shared>,
}

/// A stream of `(local monotonic time, notice)` pairs from one agent.
#[derive(Debug)]
pub struct Notices {
    rx: mpsc::Receiver<(Duration, Notice)>,
}

impl Notices {
    /// The next notice; `None` once the agent has stopped and all were read.
    pub async fn next(&mut self) -> Option<(Duration, Notice)> {
        self.rx.next().await
    }

    /// A notice if one is queued now.
    pub fn try_next(&mut self) -> Option<(Duration, Notice)> {
        self.rx.try_recv().ok()
    }
}

impl MembershipHandle {
    /// The leader as this agent sees it now.
    pub fn status(&self) -> LeaderStatus {
        self.shared.lock().status.clone()
    }

    /// The live members this agent knows (itself excluded), by ID.
    pub fn members(&self) -> Vec<AgentLoc> {
        self.shared.members()
    }

    /// The leadership history, oldest first (at most `history_size` entries, the newest).
    pub fn history(&self) -> Vec<LeadershipRecord> {
        self.shared.lock().history.iter().cloned().collect()
    }

    /// Counters of survived failures.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats
    }

    /// Notices from now on (leader changes, members, claims), queued up to `capacity`; a
    /// watcher that falls further behind loses notices (counted in [`Stats`]).
    pub fn notices(&self, capacity: usize) -> Notices {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let mut g = self.shared.lock();
        if !g.done {
            g.watchers.push(tx);
        }
        Notices { rx }
    }

    /// Asks the agent to stop, without waiting.
    pub fn request_stop(&self) {
        if let Some(tx) = self.shared.lock().stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the agent and waits until it has shut down (a leader releases its lease first).
    pub async fn stop(&self) {
        self.request_stop();
        let rx = {
            let mut g = self.shared.lock();
            if g.done {
                return;
            }
            let (tx, rx) = oneshot::channel();
            g.done_waiters.push(tx);
            rx
        };
        let _ = rx.await;
    }

    /// Whether the agent has shut down.
    pub fn is_stopped(&self) -> bool {
        self.shared.lock().done
    }
}
