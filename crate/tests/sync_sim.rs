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
//! `OUTPOST_SIM_SEEDS=N` runs N seeds (default 200); `OUTPOST_SIM_SEED=S`
//! runs only seed S (a failure prints its seed).
#![cfg(not(target_arch = "wasm32"))]

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

/// The hostile identity's device.
const MALLORY: DbId = DbId([0xEE; 16]);

/// The hostile identity: it may write every id and read only `shared/`, so
/// every other id is write-only for it.
fn mallory_grant() -> Grant {
    let mut g = grant(0);
    g.identity = "mallory".into();
    g.read = p(&["shared/"]);
    g.write = p(&["*"]);
    g
}

/// One session of the hostile identity with the hub: the real hub machine
/// and storage driver, frames collected instead of delivered.
struct HostileLink<'a> {
    sim: &'a mut Sim,
    hub: HubSession,
    sent: Vec<Frame>,
    committed: bool,
}

impl HubShell for HostileLink<'_> {
    fn feed(&mut self, ev: HubEvent<'_>) -> Option<Vec<HubAction>> {
        Some(self.hub.handle(ev, self.sim.t()))
    }

    async fn send(&mut self, frame: Vec<u8>) -> bool {
        self.sent
            .push(Frame::decode(&frame, usize::MAX).expect("the hub sends valid frames"));
        true
    }

    async fn lookup(
        &mut self,
        _: String,
        _: String,
        _: AuthMode,
        _: PublicKey,
        _: String,
    ) -> Step<HubEvent<'static>> {
        // Mallory uses a token (development mode): no key to look up.
        Step::End
    }

    async fn authenticate(&mut self, r: AuthRequest) -> Step<HubEvent<'static>> {
        let g = mallory_grant();
        let info = edge_info(&self.sim.hub, &g, &r.edge_db_id, 0, &r.checkpoint_hub, None)
            .await
            .unwrap();
        Step::Feed(if info.db_id_taken {
            HubEvent::DbIdTaken
        } else {
            HubEvent::Authorized {
                grant: g,
                hub_db_id: self.sim.hub.db_id(),
                hub_last_etag: info.hub_last_etag,
                push_checkpoint: info.push_checkpoint,
                pending: info.pending,
                pull_from: info.pull_from,
                batch_head: info.batch_head,
                purge: None,
                resync: None,
            }
        })
    }

    async fn storage(&mut self, action: HubAction) -> Step<HubEvent<'static>> {
        // It never acknowledges what it is sent: only pushes are performed.
        if matches!(action, HubAction::ReadChanges { .. }) {
            return Step::Done;
        }
        let ev = hub_storage(&self.sim.hub, "mallory", &action, |_| {}).await;
        self.committed |= matches!(ev, Some(HubEvent::PushApplied { .. }));
        ev.into()
    }

    fn metric(&mut self, _m: HubMetric) {}

    fn close(&mut self, _code: String, _message: String) {}
}

impl Sim {
    /// The hostile identity tries one attack against the hub and checks the
    /// answer at once: claiming an honest device's entry beyond what the hub
    /// holds, claiming hub history it was never sent, overwriting a document
    /// it may not read, or taking over an honest device's database id.
    fn hostile(&mut self) {
        self.stats.attack_seq += 1;
        let hub_db = self.hub.db_id();
        let docs = block_on(self.hub.changes_raw(0, 1_000_000)).unwrap();
        let kind = self.rng.below(4);
        let n = self.stats.attack_seq;
        let squat = (kind == 3)
            .then(|| {
                let e = &self.edges[self.rng.below(EDGES as u64) as usize];
                let db = e.db.db_id();
                let bound = block_on(self.hub.snapshot().origin(&db))
                    .unwrap()
                    .is_some_and(|o| o.owner.is_some());
                bound.then_some(db)
            })
            .flatten();
        let device = squat.unwrap_or(MALLORY);
        let hello = Frame::Hello {
            min_version: 5,
            max_version: 5,
            db_id: device,
            database: "main".into(),
            identity: "mallory".into(),
            credential: "token".into(),
            pull_checkpoint: 0,
            checkpoint_hub: hub_db,
            auth: AuthMode::Token,
            key: Vec::new(),
        };
        let (target, cv, expect) = match kind {
            0 => {
                // An honest device's entry, far beyond the hub's mark.
                let Some((d, (db, etag))) = docs.iter().find_map(|d| {
                    d.meta
                        .change_vector
                        .entries()
                        .iter()
                        .find(|(db, _)| *db != hub_db && *db != MALLORY)
                        .map(|e| (d, *e))
                }) else {
                    return;
                };
                let cv = d.meta.change_vector.with(db, etag + 1_000).with(MALLORY, n);
                (d.id.clone(), cv, Some("forged_change_vector"))
            }
            1 => {
                // Hub history it was never sent (it acknowledged nothing).
                let Some(d) = docs.last() else { return };
                let last = self.hub.stats().last_etag;
                let cv = ChangeVector::new().with(MALLORY, n).with(hub_db, last);
                (d.id.clone(), cv, Some("forged_change_vector"))
            }
            _ => {
                // A blind write to a document it may not read.
                let Some(d) = docs
                    .iter()
                    .find(|d| !d.id.to_lowercase().starts_with("shared/"))
                else {
                    return;
                };
                (d.id.clone(), ChangeVector::new().with(MALLORY, n), None)
            }
        };
        let before = block_on(self.hub.get_version(&target)).unwrap();
        let push = Frame::Push {
            upto: n,
            seq: 0,
            prev: [0; 32],
            signature: Vec::new(),
            docs: vec![WireDoc {
                id: target.clone(),
                collection: Some("Notes".into()),
                versions: vec![RawVersion {
                    change_vector: cv,
                    last_modified_ms: i64::MAX,
                    deleted: self.rng.below(2) == 0,
                    body: Vec::new(),
                }],
            }],
        };
        let push = match push {
            Frame::Push {
                upto,
                seq,
                prev,
                signature,
                mut docs,
            } => {
                if !docs[0].versions[0].deleted {
                    docs[0].versions[0].body = br#"{"by":"mallory"}"#.to_vec();
                }
                Frame::Push {
                    upto,
                    seq,
                    prev,
                    signature,
                    docs,
                }
            }
            f => f,
        };
        let t = self.t();
        let mut link = HostileLink {
            sim: self,
            hub: HubSession::new(t),
            sent: Vec::new(),
            committed: false,
        };
        for f in [hello, push] {
            let acts = link.hub.handle(HubEvent::Received(&f.encode()), t);
            block_on(run_hub(&mut link, acts));
            if link.hub.is_closed() {
                break;
            }
        }
        let (sent, committed) = (std::mem::take(&mut link.sent), link.committed);
        if squat.is_some() {
            assert!(
                sent.iter()
                    .any(|f| matches!(f, Frame::Error { code, .. } if code == "db_id_taken")),
                "mallory took over an honest device's id: {sent:?}"
            );
            self.stats.attacks += 1;
            return;
        }
        let answer = sent
            .iter()
            .find(|f| matches!(f, Frame::PushAck { .. } | Frame::PushRejected { .. }));
        match (expect, answer) {
            (Some(code), Some(Frame::PushRejected { code: c, .. })) => {
                assert_eq!(c, code, "attack {kind} on {target}");
            }
            (None, Some(Frame::PushAck { applied: 1, .. })) => {
                // Create-only: the document it may not read is unchanged.
                let after = block_on(self.hub.get_version(&target)).unwrap();
                assert_eq!(
                    after.map(|d| d.meta.change_vector),
                    before.map(|d| d.meta.change_vector),
                    "mallory changed {target}, which it may not read"
                );
            }
            (_, a) => panic!("attack {kind} on {target}: unexpected answer {a:?}"),
        }
        self.stats.attacks += 1;
        if committed {
            self.hub_committed(None);
        }
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

fn run(seed: u64, steps: usize) -> Stats {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.step();
    }
    sim.heal();
    sim.check();
    sim.stats
}

#[test]
fn seeded_simulation_converges_and_loses_nothing() {
    if let Ok(s) = std::env::var("OUTPOST_SIM_SEED") {
        let seed: u64 = s.parse().expect("OUTPOST_SIM_SEED is a number");
        println!("{:?}", run(seed, 400));
        return;
    }
    let seeds: u64 = std::env::var("OUTPOST_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut total = Stats::default();
    for seed in 0..seeds {
        match std::panic::catch_unwind(|| run(seed, 400)) {
            Ok(s) => {
                total.frames += s.frames;
                total.settled += s.settled;
                total.rejected += s.rejected;
                total.crashes += s.crashes;
                total.drops += s.drops;
                total.wipes += s.wipes;
                total.kept_conflicts += s.kept_conflicts;
                total.attacks += s.attacks;
                total.purged += s.purged;
                total.stale_refused += s.stale_refused;
                total.compacted += s.compacted;
                total.resyncs += s.resyncs;
            }
            Err(_) => {
                panic!("simulation failed for seed {seed}: rerun with OUTPOST_SIM_SEED={seed}")
            }
        }
    }
    println!(
        "sync simulation: {seeds} seeds × 400 steps, 1 hub + {EDGES} edges, all converged; \
         {} frames delivered, {} crashes, {} dropped connections, {} devices wiped or replaced, \
         {} conflicts met at the hub, {} kept (manual) at the end, {} rejections, \
         {} attacks by a hostile identity (each refused or without effect), \
         {} documents purged at the hub (none back anywhere; {} stale pushes of them refused), \
         {} tombstones compacted at the hub ({} resyncs of devices past the horizon)",
        total.frames,
        total.crashes,
        total.drops,
        total.wipes,
        total.settled,
        total.kept_conflicts,
        total.rejected,
        total.attacks,
        total.purged,
        total.stale_refused,
        total.compacted,
        total.resyncs
    );

    assert!(
        total.stale_refused > 0,
        "the seeds exercise stale pushes of purged ids"
    );
}

/// Runs a named scenario: a healed simulation, then `f`, then the checks of
/// the seeded run (convergence, nothing lost, scope, no false rejection).
fn scenario(f: impl FnOnce(&mut Sim)) -> Sim {
    let mut sim = Sim::new(1);
    sim.heal();
    f(&mut sim);
    sim.heal();
    sim.check();
    sim
}

#[test]
fn two_devices_of_one_identity_receive_each_others_writes() {
    scenario(|sim| {
        sim.put(0, "e0/from-first", "Notes", json!({"by": "first"}));
        sim.put(TWIN, "e0/from-second", "Notes", json!({"by": "second"}));
        sim.put(TWIN, "shared/from-second", "Cards", json!({"by": "second"}));
        sim.heal();
        for i in [0, TWIN] {
            for id in ["e0/from-first", "e0/from-second", "shared/from-second"] {
                assert!(sim.get(i, id).is_some(), "device {i} misses {id}");
            }
        }
        // Both devices edit a note the other wrote; each gets the other's edit.
        sim.put(0, "e0/from-second", "Notes", json!({"edited": "first"}));
        sim.heal();
        assert_eq!(
            sim.get(TWIN, "e0/from-second").unwrap().body,
            json!({"edited": "first"})
        );
    });
}

#[test]
fn a_wiped_device_gets_its_own_writes_back() {
    scenario(|sim| {
        sim.put(0, "e0/mine", "Notes", json!({"n": 1}));
        sim.put(0, "shared/mine", "Cards", json!({"n": 2}));
        sim.heal();
        sim.wipe(0);
        sim.heal();
        assert_eq!(sim.get(0, "e0/mine").unwrap().body, json!({"n": 1}));
        assert_eq!(sim.get(0, "shared/mine").unwrap().body, json!({"n": 2}));
        // The re-synced device writes again and its twin gets it.
        sim.put(0, "e0/mine", "Notes", json!({"n": 3}));
        sim.heal();
        assert_eq!(sim.get(TWIN, "e0/mine").unwrap().body, json!({"n": 3}));
    });
}

#[test]
fn a_replaced_device_gets_everything_its_identity_may_read() {
    scenario(|sim| {
        sim.put(TWIN, "e0/old-device", "Notes", json!({"n": 1}));
        sim.put(0, "e0/other-device", "Notes", json!({"n": 2}));
        sim.put(1, "shared/someone-else", "Notes", json!({"n": 3}));
        sim.heal();
        // The old device is lost; a new one (new database, new db id) takes
        // its place under the same identity.
        sim.wipe(TWIN);
        sim.heal();
        for id in ["e0/old-device", "e0/other-device", "shared/someone-else"] {
            assert!(sim.get(TWIN, id).is_some(), "the new device misses {id}");
        }
    });
}

#[test]
fn a_read_only_edge_gets_no_rejection_for_a_conflict_it_did_not_make() {
    let sim = scenario(|sim| {
        // Two writers make a conflict the hub keeps (`Cards`: manual).
        sim.put(0, "shared/card", "Cards", json!({"v": 0}));
        sim.heal();
        assert!(sim.get(READER, "shared/card").is_some());
        sim.links[0] = None;
        sim.links[1] = None;
        sim.put(0, "shared/card", "Cards", json!({"v": "first"}));
        sim.put(1, "shared/card", "Cards", json!({"v": "second"}));
        sim.heal();
        let d = sim.get(READER, "shared/card").unwrap();
        assert_eq!(d.conflicts.len(), 1, "the reader holds the conflict");
        // The reader reconnects, which reads its changes feed for pushing.
        sim.links[READER] = None;
        sim.heal();
        // A writer that also reads (edge 2 reads everything) makes its own
        // edit elsewhere; it must not push the conflict either.
        sim.put(2, "e2/x", "Notes", json!({}));
    });
    let reader = &sim.edges[READER];
    assert!(
        block_on(rejections(&reader.db, &reader.cfg))
            .unwrap()
            .is_empty()
    );
    assert_eq!(sim.stats.rejected, 0, "the hub rejected nothing");
}

/// Runs every link but `away`'s until nothing moves.
fn settle_except(sim: &mut Sim, away: usize) {
    for _ in 0..10_000 {
        let mut moved = false;
        for i in (0..EDGES).filter(|i| *i != away) {
            if sim.links[i].is_none() {
                sim.connect(i);
            }
            while sim.deliver(i, true) || sim.deliver(i, false) {
                moved = true;
            }
        }
        if !moved {
            // An edge's delayed acknowledgement is sent by its timer.
            let waiting = (0..EDGES)
                .filter(|i| *i != away)
                .any(|i| sim.links[i].as_ref().is_some_and(|l| !l.edge.is_idle()));
            if !waiting {
                return;
            }
            sim.tick(1_000);
        }
    }
    panic!("did not settle");
}

#[test]
fn a_device_away_past_the_retention_resyncs_and_keeps_its_offline_writes() {
    let sim = scenario(|sim| {
        // Edge 2 reads everything and writes `e2/` and `shared/`.
        sim.put(1, "e1/gone", "Cards", json!({"n": 1}));
        sim.put(1, "shared/gone", "Cards", json!({"n": 2}));
        sim.put(1, "shared/edited", "Cards", json!({"n": 3}));
        sim.put(1, "shared/kept", "Cards", json!({"n": 6}));
        sim.put(1, "e1/kept", "Cards", json!({"n": 4}));
        sim.heal();
        assert!(sim.get(2, "e1/gone").is_some());
        // Edge 2 goes away; meanwhile edge 1 deletes three documents.
        sim.links[2] = None;
        for id in ["e1/gone", "shared/gone", "shared/edited"] {
            let r = block_on(sim.edges[1].db.delete(id)).unwrap().unwrap();
            sim.edges[1]
                .deleted
                .insert((r.id.to_lowercase(), r.change_vector.clone()));
            sim.wrote(1, &r);
        }
        sim.edge_event(1, EdgeEvent::LocalChanged);
        settle_except(sim, 2);
        // Edge 2, offline, writes a new document and edits one that is
        // still there. (An edit of a document deleted meanwhile is kept and
        // pushed too, and recreates it; see docs/protocol.md, "Deletions
        // inside conflicts".)
        sim.put(2, "e2/offline", "Cards", json!({"n": 5}));
        sim.put(2, "shared/kept", "Cards", json!({"by": "away"}));
        // Past the retention, the others acknowledged: compaction removes
        // the three tombstones and passes over edge 2.
        // (The sessions time out and reconnect; a few seconds later their
        // acknowledgements have caught up with the feed.)
        sim.tick(60_000);
        settle_except(sim, 2);
        sim.tick(6_000);
        settle_except(sim, 2);
        let r = block_on(outpost::sync::compact::compact(
            &sim.hub,
            sim.t(),
            30_000,
            2,
            |_| {},
        ))
        .unwrap();
        assert_eq!(r.removed, 3, "{r:?}");
        assert_eq!(sim.hub.stats().tombstones, 0);
        let away = outpost::sync::forget::holder("edge2", None);
        assert!(
            r.expired.iter().any(|e| e.starts_with("edge2/")),
            "{away}: {r:?}"
        );
        // Edge 2 comes back: resynced, it holds neither deleted document
        // (nothing resurrects), and its offline writes reach everyone.
        sim.heal();
        assert!(sim.stats.resyncs >= 1);
        assert!(sim.get(2, "e1/gone").is_none());
        assert!(sim.get(2, "shared/gone").is_none());
        assert!(sim.get(2, "e1/kept").is_some());
        assert_eq!(sim.get(READER, "e2/offline").unwrap().body, json!({"n": 5}));
        assert!(sim.get(2, "shared/edited").is_none());
        // An edge that received the deletions from the hub compacts them
        // once the hub says it has (`Compacted`); the deleting edge its own
        // too, as its sessions reconnected after it pushed them (the
        // `Welcome` says the hub holds them).
        assert_eq!(sim.edges[READER].db.stats().tombstones, 0);
        assert_eq!(sim.edges[1].db.stats().tombstones, 0);
        assert_eq!(
            sim.get(1, "shared/kept").unwrap().body,
            json!({"by": "away"})
        );
    });
    assert!(block_on(sim.hub.get("shared/gone")).unwrap().is_none());
}
