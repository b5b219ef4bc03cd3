//! The application's view of a running agent: [`MembershipHandle`] (leader, members,
//! history, notices, stop) and the state it shares with the driver.

use crate::clock::Clock;
use crate::config::{Bug, BugKnobs};
use crate::election::Notice;
use crate::wire::AgentLoc;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tracing::{info, warn};

/// What a handle asks of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Give up the lease and stop campaigning.
    Resign,
    /// Campaign again.
    Campaign,
}

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

/// Counters of what the agent did and of what went wrong and was survived (the agent's
/// `--metrics-addr` exports the same values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Changes of the leader this agent sees.
    pub leader_changes: u64,
    /// Leases this agent took (each a new token, or a new claim under `allcall`).
    pub leases_acquired: u64,
    /// Renewals of this agent's lease.
    pub lease_renewals: u64,
    /// Reports of a start still waiting to learn the highest token (one every 5 s).
    pub recovery_waits: u64,
    /// Peers seen with other lease settings (each peer and digest once).
    pub config_mismatches: u64,
    /// Peers seen configured for another cluster size (each peer and size once).
    pub size_mismatches: u64,
    /// Other processes heard with this agent's ID.
    pub duplicate_ids: u64,
    /// Messages dropped because they were malformed or too large.
    pub malformed: u64,
    /// Publishes that failed (the network was down or refused them).
    pub publish_errors: u64,
    /// Publishes dropped because the network did not take them within a beat (a client
    /// whose outgoing buffer stays full): the agent's loop never waits longer.
    pub publishes_dropped: u64,
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
    /// Woken at every change of `status` or of the connection (and when the agent stops).
    changed: Vec<oneshot::Sender<()>>,
    /// The connection to the server is down (never, for networks without one).
    disconnected: bool,
    stats: Stats,
    /// The token of the claim running (`Some(None)` under `allcall`), to tell a renewal from
    /// a new lease.
    claiming: Option<Option<u64>>,
    /// The handles' common token: when the last handle goes, the agent stops.
    users: Weak<Users>,
}

/// Counts what notice `n` says in the agent's [`Stats`].
fn count(g: &mut SharedInner, n: &Notice) {
    let st = &mut g.stats;
    match n {
        Notice::Leader { .. } => st.leader_changes += 1,
        Notice::Claim { token, .. } => {
            if g.claiming == Some(*token) {
                st.lease_renewals += 1;
            } else {
                st.leases_acquired += 1;
                g.claiming = Some(*token);
            }
        }
        Notice::ClaimEnded { .. } => g.claiming = None,
        Notice::WaitingForRecovery { .. } => st.recovery_waits += 1,
        Notice::ConfigMismatch { .. } => st.config_mismatches += 1,
        Notice::SizeMismatch { .. } => st.size_mismatches += 1,
        Notice::DuplicateId { .. } => st.duplicate_ids += 1,
        _ => {}
    }
}

/// What the driver and every handle share.
pub(crate) struct Shared {
    inner: Mutex<SharedInner>,
    history_size: usize,
    commands: mpsc::UnboundedSender<Command>,
    /// The agent's own clock, so that handles can judge a lease without the caller's.
    clock: Arc<dyn Clock>,
    /// Planted bugs (test only).
    bugs: BugKnobs,
    #[cfg(feature = "tokio")]
    watch: tokio::sync::watch::Sender<LeaderStatus>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Held by every clone of every handle; dropping the last one stops the agent (which
/// releases its lease first).
#[derive(Debug)]
struct Users {
    shared: Weak<Shared>,
}

impl Drop for Users {
    fn drop(&mut self) {
        if let Some(s) = self.shared.upgrade() {
            s.request_stop();
        }
    }
}

impl Shared {
    /// Shared state for an agent that keeps `history_size` leadership records.
    pub(crate) fn new(
        history_size: usize,
        stop: oneshot::Sender<()>,
        commands: mpsc::UnboundedSender<Command>,
        clock: Arc<dyn Clock>,
        bugs: BugKnobs,
    ) -> Arc<Self> {
        Arc::new(Shared {
            inner: Mutex::new(SharedInner {
                stop: Some(stop),
                ..Default::default()
            }),
            history_size,
            commands,
            clock,
            bugs,
            #[cfg(feature = "tokio")]
            watch: tokio::sync::watch::Sender::new(LeaderStatus::default()),
        })
    }

    fn request_stop(&self) {
        if let Some(tx) = self.lock().stop.take() {
            let _ = tx.send(());
        }
    }

    /// Records a change of the leadership view and wakes whoever waits for one.
    fn status_changed(g: &mut SharedInner) -> Vec<oneshot::Sender<()>> {
        std::mem::take(&mut g.changed)
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
        log(&n);
        let mut g = self.lock();
        let before = (g.status.clone(), g.disconnected);
        count(&mut g, &n);
        match &n {
            Notice::Leader {
                leader,
                is_me,
                token,
                until,
            } => {
                g.status = LeaderStatus {
                    leader: leader.clone(),
                    is_leader: *is_me,
                    fencing_token: *token,
                    lease_deadline: *until,
                };
            }
            Notice::Claim { until, .. } if g.status.is_leader => g.status.lease_deadline = Some(*until),
            // The claim ends before the release and the heartbeat that say so are published
            // (they may take long on a congested connection, and another agent may hold as
            // soon as the release is out): every guard ends now, not at the leader notice.
            Notice::ClaimEnded { .. } if !self.bugs.has(Bug::GuardIgnoresClaimEnded) => {
                g.status = LeaderStatus::default();
            }
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
            Notice::Connection(c) => g.disconnected = *c == crate::network::Connection::Disconnected,
            Notice::MemberAdded(loc) => {
                g.members.insert(loc.id.clone(), loc.clone());
            }
            Notice::MemberLost(loc) => {
                g.members.remove(&loc.id);
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
        if g.status != before.0 || g.disconnected != before.1 {
            let status = g.status.clone();
            let wake = Self::status_changed(&mut g);
            drop(g);
            #[cfg(feature = "tokio")]
            self.watch.send_replace(status);
            #[cfg(not(feature = "tokio"))]
            let _ = status;
            for w in wake {
                let _ = w.send(());
            }
        }
    }

    /// Marks the agent shut down: closes every watcher and wakes everyone waiting in `stop`.
    pub(crate) fn finish(&self) {
        let (waiters, changed) = {
            let mut g = self.lock();
            g.done = true;
            g.watchers.clear();
            g.status.is_leader = false;
            (std::mem::take(&mut g.done_waiters), Self::status_changed(&mut g))
        };
        #[cfg(feature = "tokio")]
        self.watch.send_modify(|s| s.is_leader = false);
        for w in waiters.into_iter().chain(changed) {
            let _ = w.send(());
        }
    }
}

/// An application's view of a running agent: leader, membership, history, notices, stop.
/// Cheap to clone. When the last clone of the last handle is dropped, the agent releases its
/// lease and stops.
///
/// Lead while the lease is guaranteed, under its fencing token:
///
/// ```no_run
/// # async fn write(_token: u64) {}
/// # async fn serve(handle: leasehold::MembershipHandle) {
/// while let Some(lease) = handle.leadership().await {
///     let work = async {
///         loop {
///             write(lease.token()).await; // the store refuses a lower token
///         }
///     };
///     // Stop leading the moment the lease can no longer be guaranteed.
///     futures::future::select(Box::pin(work), Box::pin(lease.lost())).await;
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MembershipHandle {
    pub(crate) shared: Arc<Shared>,
    _users: Arc<Users>,
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

impl futures::Stream for Notices {
    type Item = (Duration, Notice);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

/// This agent's lease, from [`MembershipHandle::leadership`]: its fencing token, how long it
/// is still guaranteed, and a future that resolves when it no longer is.
///
/// The guarantee is judged on the agent's own clock every time it is asked, so renewals
/// extend it and nothing the caller does with its own clock can stretch it.
#[derive(Debug, Clone)]
pub struct Leadership {
    handle: MembershipHandle,
    token: Option<u64>,
}

impl Leadership {
    /// The fencing token of this lease: pass it with every write, and let the store refuse a
    /// lower one. Every `lease` lease has one, from 1 up; `allcall`, hnatsd's algorithm, has
    /// none and gives 0 (nothing can be fenced under it).
    pub fn token(&self) -> u64 {
        self.token.unwrap_or(0)
    }

    /// The token, `None` under `allcall` (for the crate's own reports).
    pub(crate) fn token_if_any(&self) -> Option<u64> {
        self.token
    }

    /// How long the lease is guaranteed from now (zero once it is not): still held by this
    /// agent, with this token, before its deadline on the agent's clock, and connected (a
    /// disconnected agent cannot renew, and its peers may already have moved on).
    pub fn remaining(&self) -> Duration {
        let now = self.handle.shared.clock.now();
        self.valid_until(now).map_or(Duration::ZERO, |d| d - now)
    }

    /// The deadline of the guarantee on the agent's clock, if it still holds at `now`.
    fn valid_until(&self, now: Duration) -> Option<Duration> {
        let g = self.handle.shared.lock();
        let s = &g.status;
        match s.lease_deadline {
            Some(d) if s.is_leader && !g.disconnected && s.fencing_token == self.token && now < d => Some(d),
            _ => None,
        }
    }

    /// Whether the lease is still guaranteed now.
    pub fn is_valid(&self) -> bool {
        !self.remaining().is_zero()
    }

    /// The end of the guarantee as a tokio instant, for `tokio::time::timeout_at` and the
    /// like. It is computed now and does not follow renewals; [`Leadership::lost`] does.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.remaining()
    }

    /// Resolves at the latest when the lease can no longer be guaranteed: lost, given up,
    /// expired or not renewed in time (a disconnected agent cannot renew), or the agent
    /// stopped. Act as leader only while this is pending.
    pub async fn lost(&self) {
        loop {
            // Registered before the lease is read, so a change between the two is not missed.
            let changed = self.handle.changed();
            let Some(until) = self.valid_until(self.handle.shared.clock.now()) else {
                return;
            };
            let expiry = self.handle.shared.clock.sleep_until(until);
            futures::future::select(std::pin::pin!(changed), expiry).await;
        }
    }
}

impl MembershipHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let users = {
            let mut g = shared.lock();
            match g.users.upgrade() {
                Some(u) => u,
                None => {
                    let u = Arc::new(Users {
                        shared: Arc::downgrade(&shared),
                    });
                    g.users = Arc::downgrade(&u);
                    u
                }
            }
        };
        MembershipHandle { shared, _users: users }
    }

    /// Whether this agent holds a lease it may act on right now: judged on its own clock, and
    /// false while it is disconnected (it cannot renew, and its peers may have moved on).
    pub fn is_leader_now(&self) -> bool {
        let (status, disconnected) = {
            let g = self.shared.lock();
            (g.status.clone(), g.disconnected)
        };
        !disconnected && status.is_leader_at(self.shared.clock.now())
    }

    /// Waits until this agent holds a lease, and returns it; `None` if the agent stops first.
    pub async fn leadership(&self) -> Option<Leadership> {
        loop {
            let changed = self.changed();
            if self.is_stopped() {
                return None;
            }
            // Whether this agent leads, under which token and connected: one read, so a guard
            // never carries a token that was not its own, and is never made already invalid
            // (an application looping on `leadership()` and `lost()` would spin).
            let (status, disconnected) = {
                let g = self.shared.lock();
                (g.status.clone(), g.disconnected)
            };
            if !disconnected && status.is_leader_at(self.shared.clock.now()) {
                return Some(Leadership {
                    handle: self.clone(),
                    token: status.fencing_token,
                });
            }
            changed.await;
        }
    }

    /// Resolves at the next change of the leadership view ([`MembershipHandle::status`]), or
    /// at once if the agent has stopped. Nothing is missed: every change after this call
    /// resolves it.
    pub fn changed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let rx = {
            let mut g = self.shared.lock();
            if g.done {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                g.changed.push(tx);
                Some(rx)
            }
        };
        async move {
            if let Some(rx) = rx {
                let _ = rx.await;
            }
        }
    }

    /// A lossless, latest-value view of the leadership state (tokio's `watch`).
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn watch(&self) -> tokio::sync::watch::Receiver<LeaderStatus> {
        self.shared.watch.subscribe()
    }

    /// Gives up the lease at once (others need not wait for it to run out) and stays a
    /// follower that does not campaign until [`MembershipHandle::campaign`]. `lease` only;
    /// ignored by `allcall`.
    pub fn resign(&self) {
        let _ = self.shared.commands.unbounded_send(Command::Resign);
    }

    /// Takes part in elections again after [`MembershipHandle::resign`].
    pub fn campaign(&self) {
        let _ = self.shared.commands.unbounded_send(Command::Campaign);
    }

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
        self.shared.request_stop();
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

/// The library's log line of a notice (what needs an operator is a warning or an error).
fn log(n: &Notice) {
    match n {
        Notice::Leader {
            leader, is_me, token, ..
        } => info!(leader = ?leader, is_me, token = ?token, "leader changed"),
        Notice::MemberAdded(loc) => info!(member = %loc.id, "member added"),
        Notice::MemberLost(loc) => info!(member = %loc.id, "member lost"),
        Notice::ConfigMismatch { peer, ours, theirs } => warn!(
            peer = %peer,
            ours = format_args!("{ours:016x}"),
            theirs = format_args!("{theirs:016x}"),
            "config_mismatch: a peer runs with different lease_time or max_drift_ppm; neither will promise to the other"
        ),
        Notice::SizeMismatch { peer, ours, theirs } => warn!(
            peer = %peer,
            ours,
            theirs,
            "size_mismatch: a peer runs with another cluster_size; promises go only to candidates configured for a cluster at least as large as the granter's (expected while the size is being changed)"
        ),
        Notice::WaitingForRecovery {
            answered,
            need,
            lost_state,
        } => warn!(
            answered = ?answered,
            need,
            "waiting_for_recovery: neither promising nor campaigning until {need} peers whose state is whole have said the highest token they know{}",
            if *lost_state {
                "; if this is the first start of a brand-new cluster, set MembershipCfg::initial_cluster_state = ClusterState::New (leasehold-agent: --initial-cluster-state new)"
            } else {
                ""
            }
        ),
        Notice::DuplicateId { inc, run } => tracing::error!(
            other_incarnation = inc,
            other_run = format_args!("{run:016x}"),
            "duplicate_id: another process runs with this agent's id; neither promising nor campaigning while it is heard"
        ),
        Notice::Undersized { cluster_size, seen } => tracing::error!(
            cluster_size,
            seen,
            "undersized: a majority of a larger cluster agrees on other settings; this agent's cluster_size is too small, and it now needs that cluster's majority of promises to lead"
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::BoxFuture;
    use futures::task::ArcWake;
    use futures::{Future, FutureExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::SystemTime;

    type Hook = Box<dyn FnOnce() + Send>;

    /// A clock that stands still and, at its next reading once armed, runs a hook: the driver
    /// acting on another thread at exactly that point of the caller's code.
    struct HookClock {
        now: Duration,
        hook: Mutex<Option<Hook>>,
    }

    impl HookClock {
        fn arm(&self, hook: impl FnOnce() + Send + 'static) {
            *self.hook.lock().unwrap() = Some(Box::new(hook));
        }
    }

    impl Clock for HookClock {
        fn now(&self) -> Duration {
            let hook = self.hook.lock().unwrap().take();
            if let Some(h) = hook {
                h();
            }
            self.now
        }
        fn wall(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH
        }
        fn sleep_until(&self, _: Duration) -> BoxFuture<'static, ()> {
            // Time stands still: only a change of the leadership view can end a wait.
            Box::pin(futures::future::pending())
        }
    }

    const NOW: Duration = Duration::from_secs(10);
    const UNTIL: Duration = Duration::from_secs(12);

    struct Agent {
        clock: Arc<HookClock>,
        shared: Arc<Shared>,
        handle: MembershipHandle,
        _stop: oneshot::Receiver<()>,
    }

    /// A handle over shared state that no driver runs: the test plays the driver.
    fn agent(bugs: BugKnobs) -> Agent {
        let clock = Arc::new(HookClock {
            now: NOW,
            hook: Mutex::new(None),
        });
        let (stop, stop_rx) = oneshot::channel();
        let (commands, _) = mpsc::unbounded();
        let shared = Shared::new(8, stop, commands, clock.clone(), bugs);
        let handle = MembershipHandle::new(shared.clone());
        Agent {
            clock,
            shared,
            handle,
            _stop: stop_rx,
        }
    }

    /// What the driver hands the shared state when this agent acquires the lease.
    fn acquire(shared: &Shared, token: u64) {
        shared.notice(
            NOW,
            Notice::Claim {
                token: Some(token),
                from: NOW,
                until: UNTIL,
            },
        );
        shared.notice(NOW, leader("n0", true, token));
    }

    fn leader(id: &str, is_me: bool, token: u64) -> Notice {
        Notice::Leader {
            leader: Some(id.into()),
            is_me,
            token: Some(token),
            until: is_me.then_some(UNTIL),
        }
    }

    fn guard(a: &Agent) -> Leadership {
        a.handle
            .leadership()
            .now_or_never()
            .expect("this agent leads: no wait")
            .expect("running")
    }

    struct Flag(AtomicBool);

    impl ArcWake for Flag {
        fn wake_by_ref(f: &Arc<Self>) {
            f.0.store(true, Ordering::SeqCst);
        }
    }

    /// Whether `lost()` resolves without time passing: at its first poll, or at a later one
    /// that its waker asked for (as an executor would).
    fn lost_resolves(lease: &Leadership) -> bool {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = futures::task::waker(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut lost = std::pin::pin!(lease.lost());
        for _ in 0..4 {
            if lost.as_mut().poll(&mut cx).is_ready() {
                return true;
            }
            if !flag.0.swap(false, Ordering::SeqCst) {
                return false;
            }
        }
        false
    }

    /// The handle counts what the agent did: a lease, its renewal, another lease after the
    /// first claim ended, each leader change, and the mismatches and waits it was told of.
    #[test]
    fn stats_count_leases_renewals_leader_changes_and_warnings() {
        let a = agent(BugKnobs::default());
        acquire(&a.shared, 1);
        acquire(&a.shared, 1);
        a.shared.notice(NOW, Notice::ClaimEnded { at: NOW });
        acquire(&a.shared, 2);
        a.shared.notice(
            NOW,
            Notice::SizeMismatch {
                peer: "n1".into(),
                ours: 3,
                theirs: 5,
            },
        );
        let st = a.handle.stats();
        assert_eq!(
            (
                st.leases_acquired,
                st.lease_renewals,
                st.leader_changes,
                st.size_mismatches
            ),
            (2, 1, 3, 1)
        );
        assert_eq!((st.config_mismatches, st.duplicate_ids, st.recovery_waits), (0, 0, 0));
    }

    #[test]
    fn a_guard_ends_when_its_claim_ends_before_the_leader_notice() {
        let a = agent(BugKnobs::default());
        acquire(&a.shared, 1);
        let lease = guard(&a);
        assert_eq!((lease.token(), lease.remaining()), (1, UNTIL - NOW));
        assert!(!lost_resolves(&lease), "pending while the lease holds");
        // A resign: the claim ends; the release and the heartbeat are still to be published.
        a.shared.notice(NOW, Notice::ClaimEnded { at: NOW });
        assert!(!lease.is_valid() && !a.handle.is_leader_now());
        assert!(lost_resolves(&lease));
        // The planted bug: the guard waits for the leader notice.
        let b = agent(BugKnobs::planted(Bug::GuardIgnoresClaimEnded));
        acquire(&b.shared, 1);
        let lease = guard(&b);
        b.shared.notice(NOW, Notice::ClaimEnded { at: NOW });
        assert!(lease.is_valid() && !lost_resolves(&lease));
        b.shared.notice(NOW, leader("n0", false, 1));
        assert!(!lease.is_valid() && lost_resolves(&lease));
    }

    #[test]
    fn lost_sees_a_change_made_while_it_reads_the_lease() {
        let a = agent(BugKnobs::default());
        acquire(&a.shared, 1);
        let lease = guard(&a);
        // The driver hands over to n1 at the moment lost() reads the clock.
        let shared = a.shared.clone();
        a.clock.arm(move || shared.notice(NOW, leader("n1", false, 2)));
        assert!(
            lost_resolves(&lease),
            "the change was missed: lost() would wait for the deadline"
        );
    }

    #[test]
    fn a_guard_carries_its_own_token_when_the_leader_changes_while_it_is_made() {
        let a = agent(BugKnobs::default());
        acquire(&a.shared, 1);
        let shared = a.shared.clone();
        a.clock.arm(move || shared.notice(NOW, leader("n1", false, 2)));
        match a.handle.leadership().now_or_never() {
            Some(Some(lease)) => {
                assert_eq!(lease.token(), 1, "a guard with the next leader's token");
                assert!(!lease.is_valid(), "and it is not valid: n1 holds");
            }
            other => assert!(other.is_none(), "waiting is right too"),
        }
    }

    #[test]
    fn no_guard_is_handed_out_while_disconnected_so_a_loop_on_leadership_and_lost_waits() {
        let a = agent(BugKnobs::default());
        acquire(&a.shared, 1);
        let disconnected = Notice::Connection(crate::network::Connection::Disconnected);
        a.shared.notice(NOW, disconnected);
        assert!(!a.handle.is_leader_now());
        assert!(
            a.handle.leadership().now_or_never().is_none(),
            "a guard that is invalid from the start: `while let Some(l) = leadership().await {{ l.lost().await }}` would spin"
        );
        a.shared
            .notice(NOW, Notice::Connection(crate::network::Connection::Reconnected));
        assert_eq!(guard(&a).token(), 1, "connected again, and still within the lease");
    }
}
