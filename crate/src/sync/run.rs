//! The one loop that performs the actions of the two machines depth-first,
//! shared by every shell (the hub's WebSocket sessions, the native and
//! browser edge clients, the simulation tests), over a small trait for the
//! effects a shell provides: [`EdgeShell`] and [`HubShell`].
//!
//! Depth-first: when an action yields an event (a storage action's result,
//! an authentication's answer), the event is fed to the machine at once and
//! the actions it returns run before the ones queued after the action. The
//! loop is runtime-agnostic (no executor, no timer): the shells own the
//! transport, the clock and the timers.
//!
//! Also here: [`OthersCommits`], which wakes an edge for commits of its
//! database made by anyone but its own replication (the engine's commit
//! observer, minus the batches the edge applied itself, tracked by
//! [`OwnEtags`]; the browser shell, whose observer runs in a task of its
//! own, uses [`OwnEtags`] directly).

use std::collections::VecDeque;
use std::future::Future;

use crate::cv::DbId;
use crate::db::{CommitInfo, Database};
use crate::keys::PublicKey;
use crate::store::PageStore;
use crate::sync::edge::{EdgeAction, EdgeEvent, SyncStatus};
use crate::sync::frame::{AuthMode, WireGrant};
use crate::sync::hub::{HubAction, HubEvent, HubMetric};
use crate::watch::CommitWatch;

/// What became of one action a shell performed.
#[derive(Debug)]
pub enum Step<E> {
    /// Done; nothing to feed back.
    Done,
    /// Feed this event to the machine (its actions run next).
    Feed(E),
    /// The session ends here: the remaining actions are dropped.
    End,
}

impl<E> From<Option<E>> for Step<E> {
    /// `Feed` the event, if any; else `Done`.
    fn from(ev: Option<E>) -> Step<E> {
        ev.map_or(Step::Done, Step::Feed)
    }
}

/// `Done` once a frame went out; `End` when the transport failed.
async fn sent<E>(ok: impl Future<Output = bool>) -> Step<E> {
    if ok.await { Step::Done } else { Step::End }
}

/// The effects an edge shell provides to [`run_edge`].
pub trait EdgeShell {
    /// Feeds `ev` to the session's machine (at the shell's clock) and returns
    /// its actions, or `None` when the session is gone (the run ends).
    fn feed(&mut self, ev: EdgeEvent<'_>) -> Option<Vec<EdgeAction>>;

    /// Sends one frame; `false` ends the run (the transport failed).
    fn send(&mut self, frame: Vec<u8>) -> impl Future<Output = bool>;

    /// Signs `message` with the edge's key ([`EdgeAction::Sign`]): feed
    /// back [`EdgeEvent::Signed`], or end the session when the key cannot
    /// sign (reported through [`EdgeShell::close`] by the shell).
    fn sign(&mut self, message: Vec<u8>) -> impl Future<Output = Step<EdgeEvent<'static>>>;

    /// Performs a storage action (`ReadLocal`, `ApplyRemote`,
    /// `RecordRejection`, `Purge`), usually through
    /// [`edge_storage`](crate::sync::driver::edge_storage).
    fn storage(&mut self, action: EdgeAction) -> impl Future<Output = Step<EdgeEvent<'static>>>;

    /// Reports the session's status.
    fn status(&mut self, _status: SyncStatus) {}

    /// The hub acknowledged a push up to edge etag `upto` (`docs` documents).
    fn pushed(&mut self, _upto: u64, _docs: u32) {}

    /// What the hub said this edge may read and write.
    fn granted(&mut self, _grant: WireGrant) {}

    /// A purge order was carried out: `removed` documents that left this
    /// edge's read scope (`reason`: `revoked` or `narrowed`) were erased and
    /// the signed receipt is on its way to the hub.
    fn purged(&mut self, _order: u64, _reason: String, _removed: u64) {}

    /// The answer to a write with safety `hub` the shell handed the machine
    /// ([`EdgeEvent::HubWrite`] `token`). A shell that hands it writes
    /// passes this on to their callers; the default drops it.
    fn hub_write_done(&mut self, _token: u64, _outcome: crate::sync::hub_write::HubWriteOutcome) {}

    /// The answer to a certificate replacement ([`EdgeAction::ReplaceDone`]).
    fn replace_done(&mut self, _token: u64, _outcome: crate::sync::ReplaceOutcome) {}

    /// The enrollment code was redeemed: later sessions use the key alone
    /// (the shell switches its settings to [`EdgeConfig::enrolled`](crate::sync::EdgeConfig::enrolled)).
    fn enrolled(&mut self) {}

    /// The machine closed the session (the run ends after this).
    fn close(&mut self, code: String, message: String, fatal: bool) -> impl Future<Output = ()>;
}

/// What [`HubAction::Authenticate`] asks the hub shell to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// Database asked for.
    pub database: String,
    /// Claimed identity.
    pub identity: String,
    /// How the edge authenticates.
    pub auth: AuthMode,
    /// The key whose proof verified (key and enrollment sessions): the
    /// shell checks it is still the identity's (or redeems the enrollment
    /// code for it).
    pub key: Option<PublicKey>,
    /// Credential: the token, or the enrollment code.
    pub credential: String,
    /// The edge database's id.
    pub edge_db_id: DbId,
    /// Its pull checkpoint.
    pub pull_checkpoint: u64,
    /// The hub database that checkpoint refers to.
    pub checkpoint_hub: DbId,
}

/// The effects a hub shell provides to [`run_hub`].
pub trait HubShell {
    /// Feeds `ev` to the session's machine (at the shell's clock) and returns
    /// its actions, or `None` when the session is gone (the run ends).
    fn feed(&mut self, ev: HubEvent<'_>) -> Option<Vec<HubAction>>;

    /// Sends one frame; `false` ends the run (the transport failed).
    fn send(&mut self, frame: Vec<u8>) -> impl Future<Output = bool>;

    /// Finds the key a key or enrollment `Hello` must prove
    /// ([`HubAction::Lookup`]): feed back `Challenge` (or end the session).
    /// Reads no database and changes nothing.
    fn lookup(
        &mut self,
        database: String,
        identity: String,
        auth: AuthMode,
        key: PublicKey,
        credential: String,
    ) -> impl Future<Output = Step<HubEvent<'static>>>;

    /// Checks a credential: feed back `Authorized` or `Unauthorized` (see
    /// [`edge_info`](crate::sync::driver::edge_info)), or end the session.
    fn authenticate(
        &mut self,
        request: AuthRequest,
    ) -> impl Future<Output = Step<HubEvent<'static>>>;

    /// Performs a storage action (`ReadChanges`, `ApplyPush`,
    /// `RecordRefusal`, `RecordPurgeReceipt`), usually
    /// through [`hub_storage`](crate::sync::driver::hub_storage).
    fn storage(&mut self, action: HubAction) -> impl Future<Output = Step<HubEvent<'static>>>;

    /// Judges a certificate identity's replacement
    /// ([`HubAction::RegisterReplacement`]): feed back `ReplacementJudged`.
    /// By default nothing is registered (`replace_unsupported`): a hub
    /// shell without certificate identities.
    fn register_replacement(
        &mut self,
        request: u64,
        chain: Vec<Vec<u8>>,
    ) -> impl Future<Output = Step<HubEvent<'static>>> {
        let _ = (request, chain);
        async {
            Step::Feed(HubEvent::ReplacementJudged {
                code: "replace_unsupported".into(),
                message: "this hub has no certificate identities".into(),
            })
        }
    }

    /// Counts a metric.
    fn metric(&mut self, metric: HubMetric);

    /// The machine closed the session (the run ends after this).
    fn close(&mut self, code: String, message: String);
}

/// One machine's actions, as the generic loop sees them.
trait Actions {
    type Action;
    type Event;
    fn perform(&mut self, action: Self::Action) -> impl Future<Output = Step<Self::Event>>;
    fn feed(&mut self, ev: Self::Event) -> Option<Vec<Self::Action>>;
}

/// Performs `actions` depth-first; `false` if the session ended on the way.
async fn depth_first<M: Actions>(m: &mut M, actions: Vec<M::Action>) -> bool {
    let mut queue: VecDeque<M::Action> = actions.into();
    while let Some(a) = queue.pop_front() {
        match m.perform(a).await {
            Step::Done => {}
            Step::End => return false,
            Step::Feed(ev) => {
                let Some(more) = m.feed(ev) else {
                    return false;
                };
                for a in more.into_iter().rev() {
                    queue.push_front(a);
                }
            }
        }
    }
    true
}

struct Edge<'a, S>(&'a mut S);

impl<S: EdgeShell> Actions for Edge<'_, S> {
    type Action = EdgeAction;
    type Event = EdgeEvent<'static>;

    async fn perform(&mut self, action: EdgeAction) -> Step<EdgeEvent<'static>> {
        let shell = &mut *self.0;
        match action {
            EdgeAction::Send(frame) => sent(shell.send(frame)).await,
            EdgeAction::Status(s) => {
                shell.status(s);
                Step::Done
            }
            EdgeAction::Pushed { upto, docs } => {
                shell.pushed(upto, docs);
                Step::Done
            }
            EdgeAction::Granted(g) => {
                shell.granted(g);
                Step::Done
            }
            EdgeAction::Close {
                code,
                message,
                fatal,
            } => {
                shell.close(code, message, fatal).await;
                Step::End
            }
            EdgeAction::Sign(message) => shell.sign(message).await,
            EdgeAction::Enrolled => {
                shell.enrolled();
                Step::Done
            }
            EdgeAction::HubWriteDone { token, outcome } => {
                shell.hub_write_done(token, outcome);
                Step::Done
            }
            EdgeAction::ReplaceDone { token, outcome } => {
                shell.replace_done(token, outcome);
                Step::Done
            }
            EdgeAction::Purged {
                order,
                reason,
                removed,
            } => {
                shell.purged(order, reason, removed);
                Step::Done
            }
            storage @ (EdgeAction::ReadLocal { .. }
            | EdgeAction::ApplyRemote { .. }
            | EdgeAction::RecordRejection(_)
            | EdgeAction::KeepGuards(_)
            | EdgeAction::KeepHubOutputs(_)
            | EdgeAction::Purge { .. }
            | EdgeAction::Forget { .. }
            | EdgeAction::BeginResync { .. }
            | EdgeAction::CompactTombstones { .. }
            | EdgeAction::EndResync { .. }) => shell.storage(storage).await,
        }
    }

    fn feed(&mut self, ev: EdgeEvent<'static>) -> Option<Vec<EdgeAction>> {
        self.0.feed(ev)
    }
}

struct Hub<'a, S>(&'a mut S);

impl<S: HubShell> Actions for Hub<'_, S> {
    type Action = HubAction;
    type Event = HubEvent<'static>;

    async fn perform(&mut self, action: HubAction) -> Step<HubEvent<'static>> {
        let shell = &mut *self.0;
        match action {
            HubAction::Send(frame) => sent(shell.send(frame)).await,
            HubAction::Metric(m) => {
                shell.metric(m);
                Step::Done
            }
            HubAction::Close { code, message } => {
                shell.close(code, message);
                Step::End
            }
            HubAction::Lookup {
                database,
                identity,
                auth,
                key,
                credential,
            } => {
                shell
                    .lookup(database, identity, auth, key, credential)
                    .await
            }
            HubAction::Authenticate {
                database,
                identity,
                auth,
                key,
                credential,
                edge_db_id,
                pull_checkpoint,
                checkpoint_hub,
            } => {
                let request = AuthRequest {
                    database,
                    identity,
                    auth,
                    key,
                    credential,
                    edge_db_id,
                    pull_checkpoint,
                    checkpoint_hub,
                };
                shell.authenticate(request).await
            }
            HubAction::RegisterReplacement { request, chain } => {
                shell.register_replacement(request, chain).await
            }
            storage @ (HubAction::ReadChanges { .. }
            | HubAction::ApplyPush { .. }
            | HubAction::ApplyWrite { .. }
            | HubAction::RecordRefusal { .. }
            | HubAction::RecordPurgeReceipt { .. }
            | HubAction::RecordAck { .. }) => shell.storage(storage).await,
        }
    }

    fn feed(&mut self, ev: HubEvent<'static>) -> Option<Vec<HubAction>> {
        self.0.feed(ev)
    }
}

/// Performs an edge machine's `actions` depth-first through `shell`.
/// Returns `false` if the session ended on the way (a `Close`, a failed send,
/// a storage action that ended it, or the machine gone).
pub async fn run_edge<S: EdgeShell>(shell: &mut S, actions: Vec<EdgeAction>) -> bool {
    depth_first(&mut Edge(shell), actions).await
}

/// Performs a hub machine's `actions` depth-first through `shell`. Returns
/// `false` if the session ended on the way (a `Close`, a failed send, an
/// authentication or storage action that ended it, or the machine gone).
pub async fn run_hub<S: HubShell>(shell: &mut S, actions: Vec<HubAction>) -> bool {
    depth_first(&mut Hub(shell), actions).await
}

/// The first and last etag a commit assigned, if it wrote any document and
/// its etags are one run (as the engine assigns them, one per write).
pub fn commit_etags(info: &CommitInfo) -> Option<(u64, u64)> {
    let mut etags: Vec<u64> = info.results.iter().flatten().map(|w| w.etag).collect();
    etags.sort_unstable();
    etags.dedup();
    let (first, last) = (*etags.first()?, *etags.last()?);
    (last - first + 1 == etags.len() as u64).then_some((first, last))
}

/// The etag runs an edge's replication committed itself (the batches it
/// applied from the hub), to tell them from the commits that may need
/// pushing (see [`commit_etags`], [`OthersCommits`]).
#[derive(Debug, Default)]
pub struct OwnEtags {
    runs: Vec<(u64, u64)>,
}

impl OwnEtags {
    /// Records a run `first..=last` the replication committed.
    pub fn add(&mut self, run: Option<(u64, u64)>) {
        self.runs.extend(run);
    }

    /// Whether etags `from + 1 ..= to` (what the commit observer reported)
    /// hold one the replication did not commit itself. Forgets the runs up
    /// to `to`.
    pub fn others_in(&mut self, from: u64, to: u64) -> bool {
        self.runs.sort_unstable();
        let mut covered = from;
        for &(first, last) in &self.runs {
            if first > covered + 1 {
                break;
            }
            covered = covered.max(last);
        }
        self.runs.retain(|&(_, last)| last > to);
        covered < to
    }
}

/// Wakes an edge for the commits of its database that may need pushing:
/// the engine's commit observer, minus the commits of the edge's own
/// replication (recorded with [`OthersCommits::own`] before the observer is
/// polled again), which would only make it re-read what it just stored.
#[derive(Debug)]
pub struct OthersCommits {
    watch: CommitWatch,
    own: OwnEtags,
}

impl OthersCommits {
    /// Watches `db` from its current last etag on.
    pub fn new<S: PageStore>(db: &Database<S>) -> OthersCommits {
        OthersCommits {
            watch: db.watch_commits(),
            own: OwnEtags::default(),
        }
    }

    /// The edge's own replication committed etags `first..=last` (see
    /// [`commit_etags`]).
    pub fn own(&mut self, etags: Option<(u64, u64)>) {
        self.own.add(etags);
    }

    /// Resolves once someone else committed (`true`), or with `false` once
    /// the database is closed or has failed. Cancel-safe.
    pub async fn changed(&mut self) -> bool {
        loop {
            let from = self.watch.seen();
            let Some(to) = self.watch.changed().await else {
                return false;
            };
            if self.own.others_in(from, to) {
                return true;
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::db::{Batch, OpenOptions};
    use crate::store::MemoryStore;
    use futures::FutureExt;
    use futures::executor::block_on;
    use serde_json::json;

    #[test]
    fn own_commits_are_skipped_and_others_wake() {
        block_on(async {
            let db = Database::open(MemoryStore::new(), OpenOptions::default())
                .await
                .unwrap();
            let mut w = OthersCommits::new(&db);
            let mut b = Batch::new();
            b.put("a/1", json!({"n": 1}));
            b.put("a/2", json!({"n": 2}));
            let info = db.commit(b).await.unwrap();
            w.own(commit_etags(&info));
            assert!(w.changed().now_or_never().is_none());
            db.put("a/3", json!({"n": 3})).await.unwrap();
            let mut b = Batch::new();
            b.put("a/4", json!({"n": 4}));
            let info = db.commit(b).await.unwrap();
            w.own(commit_etags(&info));
            assert_eq!(w.changed().now_or_never(), Some(true));
            assert!(w.changed().now_or_never().is_none());
            db.close().await.unwrap();
            assert_eq!(w.changed().now_or_never(), Some(false));
        });
    }

    #[test]
    fn own_runs_cover_or_leave_gaps() {
        let mut own = OwnEtags::default();
        own.add(Some((6, 8)));
        own.add(Some((3, 5)));
        own.add(None);
        assert!(!own.others_in(2, 8));
        own.add(Some((10, 12)));
        assert!(own.others_in(8, 12), "9 is someone else's");
        own.add(Some((13, 20)));
        assert!(!own.others_in(12, 15));
        assert!(!own.others_in(15, 20), "the rest of a run still counts");
        assert!(own.others_in(20, 21));
    }
}

/// The soonest a session's timer fires once armed: a deadline that has
/// passed, or one a `Tick` did not act on, cannot spin the session.
pub const MIN_TICK_MS: i64 = 50;
/// The latest: a bound for deadlines configured far away (the machines'
/// own are nearer: the dead-connection timeout is 45 s by default).
pub const MAX_TICK_MS: i64 = 60_000;

/// How long a shell sleeps before feeding `Tick`, for a machine whose next
/// deadline (`HubSession::next_tick`, `EdgeSession::next_tick`) is `due`
/// and a clock at `now` (both ms): between [`MIN_TICK_MS`] and
/// [`MAX_TICK_MS`].
///
/// Shells arm one timer with it and move it only when a deadline comes
/// closer; a deadline that moved later costs one early `Tick`, which does
/// nothing, and the timer is armed again after every `Tick`.
pub fn tick_delay(due: i64, now: i64) -> std::time::Duration {
    let ms = due.saturating_sub(now).clamp(MIN_TICK_MS, MAX_TICK_MS);
    std::time::Duration::from_millis(ms.unsigned_abs())
}
