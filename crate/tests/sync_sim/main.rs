//! Seeded simulation of one hub and seven edges running the real replication
//! state machines and storage driver over in-memory databases, with random
//! edits, disconnects, crashes, dropped connections, clock jumps and devices
//! wiped or replaced (a fresh database, so a new db id); no network. Edges 0
//! and 5 are two devices of one identity; edge 6 is a read-only identity
//! that never writes. Among them a hostile identity (`mallory`, see
//! [`Sim::hostile`]) attacks the hub at random moments — forged entries of
//! honest devices, hub history it was never sent, blind writes to documents
//! it may not read, taking over an honest device's id — and each answer is
//! checked at once (refused, or acknowledged with nothing changed). Every
//! seed ends by healing all links and checks:
//! - convergence: every edge holds exactly the hub's documents inside its
//!   read prefixes (same versions, same conflicts, same bodies);
//! - no acknowledged write lost: every local write an edge committed inside
//!   its write prefixes is at the hub, as is or superseded;
//! - scope: no edge holds a hub document outside its read prefixes, and the
//!   hub holds nothing an edge was not allowed to write;
//! - no false rejection: every rejection an edge recorded names a document
//!   it wrote itself (so the read-only edge has none);
//! - subject purges (`outpost-hub purge`, done on the stopped hub at random
//!   moments: a document, sometimes its whole prefix): no purged document
//!   is at the hub or at any edge at the end, whatever edges held, edited
//!   offline or pushed; every device that was sent one answered its order.
//!
//! Named scenarios below the seeded run replay the cases of issue 8 step by
//! step: two devices of one identity, a wiped device, a replaced device, a
//! read-only edge receiving a conflict made by two writers.
//!
//! The simulation is here; the hostile identity's step is in `hostile.rs`,
//! the seeded run and the named scenarios in `scenarios.rs`.
//!
//! `OUTPOST_SIM_SEEDS=N` runs N seeds (default 200); `OUTPOST_SIM_SEED=S`
//! runs only seed S (a failure prints its seed).
#![cfg(not(target_arch = "wasm32"))]

mod hostile;
mod scenarios;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::executor::block_on;
use outpost::keys::{KeyPair, PublicKey, Signer};
use outpost::rng::SplitMix;
use outpost::store::MemoryStore;
use outpost::sync::driver::{
    edge_info, edge_storage, hub_storage, load_edge_state, plan_purge, rejections,
};
use outpost::sync::frame::AuthMode;
use outpost::sync::run::{AuthRequest, EdgeShell, HubShell, Step, run_edge, run_hub};
use outpost::sync::{
    ConflictPolicy, EdgeAction, EdgeConfig, EdgeEvent, EdgeSession, Frame, Grant, HubAction,
    HubEvent, HubMetric, HubSession, Prefixes, WireDoc,
};
use outpost::{Batch, ChangeVector, CvOrder, Database, DbId, OpenOptions, PutOptions, RawVersion};
use serde_json::json;

type Db = Database<Arc<MemoryStore>>;

const EDGES: usize = 7;
/// The second device of edge 0's identity.
const TWIN: usize = 5;
/// The read-only identity.
const READER: usize = 6;

/// The identity (as an index of [`grant`]) edge `i` syncs as.
fn owner(i: usize) -> usize {
    if i == TWIN { 0 } else { i }
}

struct Edge {
    store: Arc<MemoryStore>,
    db: Db,
    cfg: EdgeConfig,
    /// The identity's key (the twin devices of one identity share it).
    key: Arc<KeyPair>,
    grant: Grant,
    /// Local writes inside the write prefixes: (id, cv).
    acked: Vec<(String, ChangeVector)>,
    /// Every id this device wrote locally (lowercase).
    wrote: HashSet<String>,
    /// Its local deletions (lowercase id, change vector): once the hub
    /// compacted one, the document is simply absent.
    deleted: HashSet<(String, ChangeVector)>,
}

struct Link {
    edge: EdgeSession,
    hub: HubSession,
    to_hub: VecDeque<Vec<u8>>,
    to_edge: VecDeque<Vec<u8>>,
}

struct Sim {
    rng: SplitMix,
    now: Arc<AtomicI64>,
    hub_store: Arc<MemoryStore>,
    hub: Db,
    edges: Vec<Edge>,
    links: Vec<Option<Link>>,
    log: Vec<String>,
    stats: Stats,
    /// Ids the hub purged (lowercase): never written again by anyone in the
    /// simulation; at the end no edge and not the hub holds one.
    purged: HashSet<String>,
}

#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    frames: u64,
    settled: u64,
    rejected: u64,
    crashes: u64,
    drops: u64,
    wipes: u64,
    kept_conflicts: u64,
    /// Attacks the hostile identity made whose answer was checked.
    attacks: u64,
    /// Attacks tried (its own etags).
    attack_seq: u64,
    /// Documents purged at the hub (subject purges).
    purged: u64,
    /// Pushes of purged ids the hub refused (`purged`): stale edges.
    stale_refused: u64,
    /// Tombstones the hub compacted.
    compacted: u64,
    /// `Resync` frames sent (devices past the compaction horizon).
    resyncs: u64,
}

fn p(list: &[&str]) -> Prefixes {
    Prefixes::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn opts(now: &Arc<AtomicI64>) -> OpenOptions {
    let n = now.clone();
    OpenOptions {
        clock: Some(Arc::new(move || n.load(Ordering::Relaxed))),
        ..Default::default()
    }
}

fn grant(i: usize) -> Grant {
    let own = format!("e{i}/");
    let (read, write) = match i {
        0 | 1 => (p(&[&own, "shared/"]), p(&[&own, "shared/"])),
        2 => (p(&["*"]), p(&[&own, "shared/"])),
        READER => (p(&["*"]), p(&[])),
        _ => (p(&[&own]), p(&[&own])),
    };
    let mut policies = HashMap::new();
    policies.insert("notes".to_string(), ConflictPolicy::Latest);
    policies.insert("cards".to_string(), ConflictPolicy::Manual);
    policies.insert("tasks".to_string(), ConflictPolicy::HubWins);
    Grant {
        identity: format!("edge{i}"),
        read,
        write,
        relay: false,
        policies,
        default_policy: ConflictPolicy::Manual,
        never_delete: Vec::new(),
        hub_outputs: Vec::new(),
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let now = Arc::new(AtomicI64::new(1_700_000_000_000));
        let hub_store = Arc::new(MemoryStore::new());
        let hub = block_on(Database::open(hub_store.clone(), opts(&now))).unwrap();
        let mut edges: Vec<Edge> = Vec::new();
        for i in 0..EDGES {
            let store = Arc::new(MemoryStore::new());
            let db = block_on(Database::open(store.clone(), opts(&now))).unwrap();
            let key = if owner(i) == i {
                Arc::new(KeyPair::generate().unwrap())
            } else {
                edges[owner(i)].key.clone()
            };
            edges.push(Edge {
                store,
                db,
                cfg: EdgeConfig::with_key(
                    "main",
                    &format!("edge{}", owner(i)),
                    key.public_key().clone(),
                ),
                key,
                grant: grant(owner(i)),
                acked: Vec::new(),
                wrote: HashSet::new(),
                deleted: HashSet::new(),
            });
        }
        Sim {
            rng: SplitMix(seed),
            now,
            hub_store,
            hub,
            edges,
            links: (0..EDGES).map(|_| None).collect(),
            log: Vec::new(),
            stats: Stats::default(),
            purged: HashSet::new(),
        }
    }

    fn t(&self) -> i64 {
        self.now.load(Ordering::Relaxed)
    }

    fn connect(&mut self, i: usize) {
        let e = &self.edges[i];
        let st = block_on(load_edge_state(&e.db, &e.cfg)).unwrap();
        let t = self.t();
        self.links[i] = Some(Link {
            edge: EdgeSession::new(e.cfg.clone(), st, t),
            hub: HubSession::new(t),
            to_hub: VecDeque::new(),
            to_edge: VecDeque::new(),
        });
        self.edge_event(i, EdgeEvent::Opened);
    }

    fn edge_event(&mut self, i: usize, ev: EdgeEvent<'_>) {
        let t = self.t();
        let Some(link) = self.links[i].as_mut() else {
            return;
        };
        let acts = link.edge.handle(ev, t);
        block_on(run_edge(&mut EdgeLink { sim: self, i }, acts));
    }

    fn hub_event(&mut self, i: usize, ev: HubEvent<'_>) {
        let t = self.t();
        let Some(link) = self.links[i].as_mut() else {
            return;
        };
        let acts = link.hub.handle(ev, t);
        let mut shell = HubLink {
            sim: self,
            i,
            committed: false,
        };
        block_on(run_hub(&mut shell, acts));
        if shell.committed {
            self.hub_committed(Some(i));
        }
    }

    fn hub_committed(&mut self, except: Option<usize>) {
        let last = self.hub.stats().last_etag;
        for j in 0..EDGES {
            if Some(j) != except && self.links[j].is_some() {
                self.hub_event(j, HubEvent::Committed { last_etag: last });
            }
        }
    }

    /// Queues a frame on link `i`, hub-bound if `up`.
    fn post(&mut self, i: usize, up: bool, frame: Vec<u8>) {
        let who = if up {
            format!("edge {i} sends")
        } else {
            format!("hub to {i} sends")
        };
        trace(&who, &frame);
        if !up && frame.first() == Some(&18) {
            self.stats.resyncs += 1;
        }
        if let Some(link) = self.links[i].as_mut() {
            if up {
                link.to_hub.push_back(frame);
            } else {
                link.to_edge.push_back(frame);
            }
        }
    }

    /// Delivers one queued frame on link `i`, hub-bound if `up`.
    fn deliver(&mut self, i: usize, up: bool) -> bool {
        let Some(link) = self.links[i].as_mut() else {
            return false;
        };
        let q = if up {
            &mut link.to_hub
        } else {
            &mut link.to_edge
        };
        let Some(b) = q.pop_front() else {
            return false;
        };
        self.stats.frames += 1;
        if up {
            self.hub_event(i, HubEvent::Received(&b));
        } else {
            self.edge_event(i, EdgeEvent::Received(&b));
        }
        true
    }

    fn pick_id(&mut self, i: usize) -> String {
        let i = owner(i);
        let n = self.rng.below(6);
        match self.rng.below(10) {
            0..=4 => format!("e{i}/d{n}"),
            5..=7 if i <= 2 => format!("shared/d{n}"),
            8 => format!("forbidden/e{i}/d{n}"),
            _ => format!("E{i}/D{n}"),
        }
    }

    fn edge_write(&mut self, i: usize) {
        if i == READER {
            return;
        }
        let id = self.pick_id(i);
        if self.purged.contains(&id.to_lowercase()) {
            return;
        }
        let coll =
            ["Notes", "Cards", "Tasks"][(id.len() + id.as_bytes()[id.len() - 1] as usize) % 3];
        let db = &self.edges[i].db;
        let r = match self.rng.below(8) {
            0 => {
                let r = block_on(db.delete(&id)).unwrap();
                if let Some(r) = &r {
                    self.edges[i]
                        .deleted
                        .insert((r.id.to_lowercase(), r.change_vector.clone()));
                }
                r
            }
            1 => {
                // Resolve a conflict, if any.
                let c = block_on(db.conflicts(None, 10)).unwrap();
                let w = &self.edges[i].grant.write;
                let Some(d) = c.iter().find(|d| w.allows(&d.id)) else {
                    return;
                };
                let mut b = Batch::new();
                b.resolve(d.id.clone(), Some(json!({"resolved_by": i})), None);
                block_on(db.commit(b)).unwrap().results.pop().flatten()
            }
            _ => {
                let v = self.rng.next_u64() % 1000;
                Some(
                    block_on(db.put_with(
                        &id,
                        json!({"v": v, "by": i}),
                        PutOptions {
                            collection: Some(coll.into()),
                            ..Default::default()
                        },
                    ))
                    .unwrap(),
                )
            }
        };
        if let Some(r) = r {
            if std::env::var("OUTPOST_SIM_TRACE").as_deref() == Ok(r.id.as_str()) {
                eprintln!("edge {i} local write {} {:?}", r.change_vector, r.outcome);
            }
            self.wrote(i, &r);
        }
        self.edge_event(i, EdgeEvent::LocalChanged);
    }

    fn wrote(&mut self, i: usize, r: &outpost::WriteResult) {
        let e = &mut self.edges[i];
        e.wrote.insert(r.id.to_lowercase());
        if e.grant.write.allows(&r.id) {
            e.acked.push((r.id.clone(), r.change_vector.clone()));
        }
    }

    /// A put of `id` in collection `coll` on edge `i`.
    fn put(&mut self, i: usize, id: &str, coll: &str, body: serde_json::Value) {
        let db = &self.edges[i].db;
        let r = block_on(db.put_with(
            id,
            body,
            PutOptions {
                collection: Some(coll.into()),
                ..Default::default()
            },
        ))
        .unwrap();
        self.wrote(i, &r);
        self.edge_event(i, EdgeEvent::LocalChanged);
    }

    /// The device of edge `i` is wiped (browser storage cleared) or replaced
    /// by a new one: its database starts empty, with a new db id. Its
    /// writes that had not reached the hub are gone with it.
    fn wipe(&mut self, i: usize) {
        self.links[i] = None;
        let hub_docs = block_on(self.hub.changes(0, 1_000_000)).unwrap();
        let at_hub = |id: &str, cv: &ChangeVector| {
            hub_docs.iter().any(|d| {
                d.id.to_lowercase() == id.to_lowercase()
                    && std::iter::once(&d.meta.change_vector)
                        .chain(d.conflicts.iter().map(|c| &c.change_vector))
                        .any(|h| matches!(h.compare(cv), CvOrder::Equal | CvOrder::Newer))
            })
        };
        let old = self.edges[i].db.db_id();
        let store = Arc::new(MemoryStore::new());
        let db = block_on(Database::open(store.clone(), opts(&self.now))).unwrap();
        assert_ne!(db.db_id(), old);
        let e = &mut self.edges[i];
        e.acked.retain(|(id, cv)| at_hub(id, cv));
        e.wrote.clear();
        e.store = store;
        e.db = db;
    }

    /// The document `id` as edge `i` holds it.
    fn get(&self, i: usize, id: &str) -> Option<outpost::Document> {
        block_on(self.edges[i].db.get(id)).unwrap()
    }

    fn hub_write(&mut self) {
        let n = self.rng.below(6);
        let i = self.rng.below(EDGES as u64);
        let id = format!("e{i}/d{n}");
        if self.purged.contains(&id) {
            return;
        }
        block_on(self.hub.put(&id, json!({"hub": self.rng.next_u64() % 100}))).unwrap();
        self.hub_committed(None);
    }

    fn crash_edge(&mut self, i: usize) {
        self.links[i] = None;
        let e = &mut self.edges[i];
        e.store.reopen();
        e.db = block_on(Database::open(e.store.clone(), opts(&self.now))).unwrap();
    }

    /// The operator purges a subject (a random document the hub holds,
    /// sometimes with every other document of its prefix) on the stopped
    /// hub: every link drops, and edges holding it, connected or not, may
    /// hold edits of it that never reached the hub.
    fn purge(&mut self) {
        for l in &mut self.links {
            *l = None;
        }
        let docs = block_on(self.hub.changes(0, 1_000_000)).unwrap();
        if docs.is_empty() {
            return;
        }
        let d = &docs[self.rng.below(docs.len() as u64) as usize];
        let id = d.id.to_lowercase();
        let prefixes = if self.rng.below(4) == 0 {
            vec![format!("{}/", id.split('/').next().unwrap_or_default())]
        } else {
            Vec::new()
        };
        let req = outpost::sync::forget::SubjectRequest {
            ids: vec![id.clone()],
            prefixes: prefixes.clone(),
            by: "sim".into(),
            ..Default::default()
        };
        let r = block_on(outpost::sync::forget::purge_subject(
            &self.hub,
            &req,
            self.t(),
        ))
        .unwrap();
        self.log
            .push(format!("purge {id} {prefixes:?}: {} removed", r.removed));
        if std::env::var("OUTPOST_SIM_TRACE").is_ok() {
            eprintln!(
                "{} marker {:?} owed {:?}",
                self.log.last().unwrap(),
                r.marker,
                r.owed
            );
        }
        self.stats.purged += r.removed;
        self.purged.insert(id);
        for d in &docs {
            let k = d.id.to_lowercase();
            if prefixes.iter().any(|p| k.starts_with(p.as_str())) {
                self.purged.insert(k);
            }
        }
        self.hub_store.reopen();
        self.hub = block_on(Database::open(self.hub_store.clone(), opts(&self.now))).unwrap();
    }

    /// Tombstone compaction at the hub while sessions run, with a
    /// retention that is sometimes 0 (every device not seen this very
    /// millisecond is passed over and resyncs), sometimes 30 s, sometimes
    /// for ever (only acknowledgements count).
    fn compact(&mut self) {
        let retention = [0, 30_000, i64::MAX / 4][self.rng.below(3) as usize];
        let step = 1 + self.rng.below(20) as usize;
        let r = block_on(outpost::sync::compact::compact(
            &self.hub,
            self.t(),
            retention,
            step,
            |_| {},
        ))
        .unwrap();
        self.log.push(format!(
            "compact (retention {retention}): up to {}, {} removed",
            r.watermark, r.removed
        ));
        if std::env::var("OUTPOST_SIM_TRACE").is_ok() {
            eprintln!("{}", self.log.last().unwrap());
        }
        self.stats.compacted += r.removed;
    }

    fn crash_hub(&mut self) {
        for l in &mut self.links {
            *l = None;
        }
        self.hub_store.reopen();
        self.hub = block_on(Database::open(self.hub_store.clone(), opts(&self.now))).unwrap();
    }

    fn tick(&mut self, ms: i64) {
        self.now.fetch_add(ms, Ordering::Relaxed);
        for i in 0..EDGES {
            self.edge_event(i, EdgeEvent::Tick);
            self.hub_event(i, HubEvent::Tick);
        }
    }

    fn step(&mut self) {
        let i = self.rng.below(EDGES as u64) as usize;
        match self.rng.below(100) {
            0..=39 => {
                if self.links[i].is_none() {
                    if self.rng.below(3) == 0 {
                        self.connect(i);
                    }
                } else {
                    let up = self.rng.below(2) == 0;
                    if !self.deliver(i, up) {
                        self.deliver(i, !up);
                    }
                }
            }
            40..=64 => {
                self.edge_write(i);
            }
            65..=69 => self.hub_write(),
            70..=76 => {
                self.log.push(format!("drop link {i}"));
                self.stats.drops += 1;
                if std::env::var("OUTPOST_SIM_TRACE").is_ok() {
                    eprintln!("drop link {i}");
                }
                self.links[i] = None;
            }
            77..=79 => {
                self.log.push(format!("crash edge {i}"));
                self.stats.crashes += 1;
                self.crash_edge(i);
            }
            80 => {
                self.log.push("crash hub".into());
                self.stats.crashes += 1;
                self.crash_hub();
            }
            81..=84 => {
                let ms = self.rng.below(20_000) as i64;
                self.tick(ms);
            }
            85 | 86 => {
                self.log.push(format!("wipe edge {i}"));
                self.stats.wipes += 1;
                self.wipe(i);
            }
            87..=89 => self.hostile(),
            90 => self.purge(),
            91 | 92 => self.compact(),
            _ => {
                if self.links[i].is_none() {
                    self.connect(i);
                }
            }
        }
    }

    /// Connects everything and runs until no frame is left and every machine
    /// is idle.
    fn heal(&mut self) {
        for round in 0..10_000 {
            for i in 0..EDGES {
                if self.links[i].is_none() {
                    self.connect(i);
                }
            }
            let mut moved = false;
            for i in 0..EDGES {
                while self.deliver(i, true) || self.deliver(i, false) {
                    moved = true;
                }
            }
            if !moved {
                let idle = self.links.iter().all(|l| {
                    l.as_ref()
                        .is_some_and(|l| l.edge.is_idle() && l.edge.is_live())
                });
                if idle {
                    return;
                }
                // Time passes (heartbeats); ensure sessions that are waiting
                // get their pings answered.
                self.tick(1_000);
            }
            assert!(
                round < 9_999,
                "did not quiesce; log tail: {:?}",
                &self.log[self.log.len().saturating_sub(20)..]
            );
        }
    }

    fn check(&mut self) {
        let hub_docs = block_on(self.hub.changes(0, 1_000_000)).unwrap();
        for d in &hub_docs {
            assert!(
                !self.purged.contains(&d.id.to_lowercase()),
                "the hub holds {} again after its purge",
                d.id
            );
        }
        // Every device in use that was sent purged documents answered its
        // order (a wiped device's old id stays owing: the hub cannot know it
        // is gone; the hostile identity never answers).
        let current: Vec<String> = self
            .edges
            .iter()
            .map(|e| outpost::sync::forget::holder(&e.grant.identity, Some(&e.db.db_id())))
            .collect();
        for (who, markers) in block_on(outpost::sync::forget::owed(&self.hub)).unwrap() {
            assert!(
                !current.contains(&who),
                "{who} still owes a receipt for purges {markers:?}"
            );
        }
        let hub_map: HashMap<String, &outpost::Document> =
            hub_docs.iter().map(|d| (d.id.to_lowercase(), d)).collect();
        // The hub stores nothing outside some edge's write prefixes.
        for d in &hub_docs {
            assert!(
                !d.id.to_lowercase().starts_with("forbidden/"),
                "hub holds {}",
                d.id
            );
        }
        for (i, e) in self.edges.iter().enumerate() {
            let edge_docs = block_on(e.db.changes(0, 1_000_000)).unwrap();
            for d in &edge_docs {
                assert!(
                    !self.purged.contains(&d.id.to_lowercase()),
                    "edge {i} still holds {}, purged at the hub; log: {:?}",
                    d.id,
                    self.log
                        .iter()
                        .filter(|l| l.starts_with("purge") || l.contains(&format!("edge {i}")))
                        .collect::<Vec<_>>()
                );
            }
            let mut seen = 0;
            for d in &edge_docs {
                let k = d.id.to_lowercase();
                if k.starts_with("forbidden/") {
                    continue;
                }
                let Some(h) = hub_map.get(&k) else {
                    // A deletion the hub compacted (after every device
                    // in use acknowledged it) may still be held here.
                    assert!(
                        d.meta.flags.is_tombstone(),
                        "edge {i} holds {} which the hub does not; log: {:?}",
                        d.id,
                        &self.log[self.log.len().saturating_sub(30)..]
                    );
                    continue;
                };
                assert!(
                    e.grant.read.allows(&d.id),
                    "edge {i} holds {} outside its read scope",
                    d.id
                );
                assert_eq!(
                    d.meta.change_vector, h.meta.change_vector,
                    "edge {i} doc {}",
                    d.id
                );
                assert_eq!(d.body, h.body, "edge {i} doc {}", d.id);
                assert_eq!(d.conflicts, h.conflicts, "edge {i} doc {}", d.id);
                assert_eq!(d.meta.flags.is_tombstone(), h.meta.flags.is_tombstone());
                seen += 1;
            }
            let in_scope = hub_docs
                .iter()
                .filter(|d| e.grant.read.allows(&d.id))
                .count();
            assert_eq!(
                seen, in_scope,
                "edge {i} misses documents of its read scope"
            );
            for (id, cv) in &e.acked {
                if self.purged.contains(&id.to_lowercase()) {
                    continue;
                }
                let Some(h) = hub_map.get(&id.to_lowercase()) else {
                    // A deletion the hub compacted is absent, as deleted.
                    // (this write, or a later deletion of it by this edge).
                    assert!(
                        deleted_later(e, id, cv),
                        "edge {i}'s write of {id} never reached the hub"
                    );
                    continue;
                };
                let held = std::iter::once(&h.meta.change_vector)
                    .chain(h.conflicts.iter().map(|c| &c.change_vector));
                let mut ok = false;
                for hc in held {
                    if matches!(hc.compare(cv), CvOrder::Equal | CvOrder::Newer) {
                        ok = true;
                    }
                }
                // A later deletion of it by this edge that the hub
                // compacted leaves nothing for a version written
                // concurrently (offline, by a device past the retention or
                // new) to conflict with: that version is the document now.
                let compacted = self.stats.compacted > 0 && deleted_later(e, id, cv);
                assert!(
                    ok || compacted,
                    "edge {i}'s write of {id} ({cv}) is lost at the hub"
                );
            }
            // Writes outside the write prefixes were rejected and recorded;
            // every recorded rejection is about a document this device
            // wrote (never about versions it only received).
            let rej = block_on(rejections(&e.db, &e.cfg)).unwrap();
            for r in &rej {
                assert!(
                    e.wrote.contains(&r.id.to_lowercase()),
                    "edge {i} got a rejection for {} ({}), which it never wrote",
                    r.id,
                    r.code
                );
            }
            let forbidden = edge_docs
                .iter()
                .filter(|d| d.id.starts_with("forbidden/"))
                .count();
            if forbidden > 0 {
                assert!(
                    rej.iter().any(|r| r.code == "write_denied"),
                    "edge {i}: forbidden writes but no recorded rejection"
                );
            }
            assert!(block_on(e.db.integrity_check()).unwrap().is_ok());
        }
        assert!(block_on(self.hub.integrity_check()).unwrap().is_ok());
        self.stats.kept_conflicts += block_on(self.hub.conflicts(None, 1000)).unwrap().len() as u64;
    }
}

/// Whether edge `e` deleted `id` after (or by) its write `cv`.
fn deleted_later(e: &Edge, id: &str, cv: &ChangeVector) -> bool {
    let k = id.to_lowercase();
    e.deleted
        .iter()
        .any(|(d, dcv)| *d == k && matches!(dcv.compare(cv), CvOrder::Equal | CvOrder::Newer))
}

/// The edge end of link `i` as a shell of [`run_edge`].
struct EdgeLink<'a> {
    sim: &'a mut Sim,
    i: usize,
}

impl EdgeShell for EdgeLink<'_> {
    fn feed(&mut self, ev: EdgeEvent<'_>) -> Option<Vec<EdgeAction>> {
        let t = self.sim.t();
        Some(self.sim.links[self.i].as_mut()?.edge.handle(ev, t))
    }

    async fn send(&mut self, frame: Vec<u8>) -> bool {
        self.sim.post(self.i, true, frame);
        true
    }

    async fn storage(&mut self, action: EdgeAction) -> Step<EdgeEvent<'static>> {
        let e = &self.sim.edges[self.i];
        edge_storage(&e.db, &e.cfg, &action).await.into()
    }

    async fn sign(&mut self, message: Vec<u8>) -> Step<EdgeEvent<'static>> {
        let sig = self.sim.edges[self.i].key.sign(&message).unwrap();
        Step::Feed(EdgeEvent::Signed(sig))
    }

    async fn close(&mut self, code: String, _message: String, fatal: bool) {
        let i = self.i;
        assert!(!fatal, "fatal close at edge {i}: {code}");
        self.sim.log.push(format!("edge {i} closed: {code}"));
        self.sim.links[i] = None;
    }
}

/// The hub end of link `i` as a shell of [`run_hub`]; `committed` once a
/// push was stored (the other links are told after the run).
struct HubLink<'a> {
    sim: &'a mut Sim,
    i: usize,
    committed: bool,
}

impl HubShell for HubLink<'_> {
    fn feed(&mut self, ev: HubEvent<'_>) -> Option<Vec<HubAction>> {
        let t = self.sim.t();
        Some(self.sim.links[self.i].as_mut()?.hub.handle(ev, t))
    }

    async fn send(&mut self, frame: Vec<u8>) -> bool {
        self.sim.post(self.i, false, frame);
        true
    }

    async fn lookup(
        &mut self,
        database: String,
        identity: String,
        _auth: AuthMode,
        _key: PublicKey,
        _credential: String,
    ) -> Step<HubEvent<'static>> {
        let e = &self.sim.edges[self.i];
        let known = identity == e.grant.identity && database == "main";
        Step::Feed(HubEvent::Challenge {
            hub_id: self.sim.hub.db_id(),
            key: known.then(|| e.key.public_key().clone()),
        })
    }

    async fn authenticate(&mut self, r: AuthRequest) -> Step<HubEvent<'static>> {
        let e = &self.sim.edges[self.i];
        let g = &e.grant;
        Step::Feed(
            if r.identity == g.identity
                && r.key.as_ref() == Some(e.key.public_key())
                && r.database == "main"
            {
                let info = edge_info(
                    &self.sim.hub,
                    g,
                    &r.edge_db_id,
                    r.pull_checkpoint,
                    &r.checkpoint_hub,
                    None,
                )
                .await
                .unwrap();
                if info.db_id_taken {
                    return Step::Feed(HubEvent::DbIdTaken);
                }
                // What the device must erase (subject purges), and the
                // record of what it is served.
                let purge = plan_purge(
                    &self.sim.hub,
                    &g.identity,
                    &r.edge_db_id,
                    g.read.as_slice(),
                    false,
                )
                .await
                .unwrap();
                HubEvent::Authorized {
                    grant: g.clone(),
                    hub_db_id: self.sim.hub.db_id(),
                    hub_last_etag: info.hub_last_etag,
                    push_checkpoint: info.push_checkpoint,
                    pending: info.pending,
                    pull_from: info.pull_from,
                    batch_head: info.batch_head,
                    purge,
                    resync: info.resync,
                }
            } else {
                HubEvent::Unauthorized
            },
        )
    }

    async fn storage(&mut self, action: HubAction) -> Step<HubEvent<'static>> {
        let identity = self.sim.edges[self.i].grant.identity.clone();
        let mut settled = 0;
        let ev = hub_storage(&self.sim.hub, &identity, &action, |_| settled += 1).await;
        self.sim.stats.settled += settled;
        self.committed |= matches!(ev, Some(HubEvent::PushApplied { .. }));
        ev.into()
    }

    fn metric(&mut self, m: HubMetric) {
        if let HubMetric::Rejected(r) = m {
            self.sim.stats.rejected += 1;
            if r.code() == "purged" {
                self.sim.stats.stale_refused += 1;
            }
        }
    }

    fn close(&mut self, code: String, _message: String) {
        let i = self.i;
        self.sim.log.push(format!("hub closed link {i}: {code}"));
        self.sim.links[i] = None;
    }
}

fn trace(who: &str, b: &[u8]) {
    if let Ok(id) = std::env::var("OUTPOST_SIM_TRACE") {
        let f = outpost::sync::Frame::decode(b, usize::MAX).unwrap();
        match &f {
            outpost::sync::Frame::Changes { upto, docs }
            | outpost::sync::Frame::Push { upto, docs, .. } => {
                for d in docs.iter().filter(|d| d.id.to_lowercase() == id) {
                    let v: Vec<String> = d
                        .versions
                        .iter()
                        .map(|v| {
                            format!("{}={}", v.change_vector, String::from_utf8_lossy(&v.body))
                        })
                        .collect();
                    eprintln!("{who} {} upto {upto}: {v:?}", f.name());
                }
            }
            outpost::sync::Frame::Hello {
                pull_checkpoint, ..
            } => eprintln!("{who} Hello from {pull_checkpoint}"),
            outpost::sync::Frame::Error { code, .. } => eprintln!("{who} Error {code}"),
            outpost::sync::Frame::PushRejected { code, id, .. } => {
                eprintln!("{who} PushRejected {code} {id}")
            }
            outpost::sync::Frame::ChangesAck { upto } => eprintln!("{who} ChangesAck {upto}"),
            outpost::sync::Frame::Purge {
                order, reason, ids, ..
            } => eprintln!("{who} Purge {order} {reason} {} ids", ids.len()),
            outpost::sync::Frame::PurgeReceipt { order, .. } => {
                eprintln!("{who} PurgeReceipt {order}")
            }
            other => eprintln!("{who} {}", other.name()),
        }
    }
}
