//! The hostile identity `mallory`: its grant, its session with the hub
//! (a [`HubShell`] over raw frames) and its step of the simulation.

use super::*;

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
    pub(super) fn hostile(&mut self) {
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
