//! One device's view: echo suppression, the grant in the welcome, read-only
//! edges, claimed history, the deletion guards.

use super::*;

#[test]
fn the_hub_holds_back_only_what_this_device_sent() {
    let device = DbId([1; 16]);
    let twin = DbId([2; 16]);
    // A session that resumes from a checkpoint; one from 0 (a first sync,
    // a resync) is sent everything, below.
    let (mut h, _) = hub_from(device, 5, 5, grant(), 1);
    let g = grant();
    let tagged = |id: &str, etag: u64, source: Option<String>| {
        let mut d = doc(id, etag, 1);
        d.meta.source = source;
        d
    };
    let (mut fresh, _) = hub_for(device, 5, 5, grant());
    let mine = vec![tagged("notes/mine", 1, Some(g.source_for(&device)))];
    let a = fresh.handle(
        HubEvent::ChangesRead {
            docs: FeedPage::new(mine),
            complete: true,
            last_etag: 1,
            horizon: 0,
            compacted: 0,
        },
        0,
    );
    assert!(
        sent(&a)
            .iter()
            .any(|f| matches!(f, Frame::Changes { docs, .. } if docs.len() == 1)),
        "a session from 0 sends the device's own versions: {a:?}"
    );
    let docs = vec![
        // Pushed by this very device: it has it.
        tagged("notes/mine", 1, Some(g.source_for(&device))),
        // Pushed by another device of the same identity.
        tagged("notes/twin", 2, Some(g.source_for(&twin))),
        // Tagged by an older hub with the identity only (no device).
        tagged("notes/legacy", 3, Some("edge:laptop".into())),
        // Pushed by another identity; and written at the hub.
        tagged(
            "notes/other",
            4,
            Some("edge:desktop/AAAAAAAAAAAAAAAAAAAAAA".into()),
        ),
        tagged("notes/hub", 5, None),
    ];
    let a = h.handle(
        HubEvent::ChangesRead {
            docs: FeedPage::new(docs),
            complete: true,
            last_etag: 5,
            horizon: 0,
            compacted: 0,
        },
        0,
    );
    let ids: Vec<String> = sent(&a)
        .into_iter()
        .flat_map(|f| match f {
            Frame::Changes { docs, .. } => docs.into_iter().map(|d| d.id).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(
        ids,
        ["notes/twin", "notes/legacy", "notes/other", "notes/hub"]
    );
    // What the device pushes is tagged with the device, not only the identity.
    let a = h.handle(
        HubEvent::Received(&push(vec![wire(
            "notes/new",
            ChangeVector::new().with(device, 3),
            "{}",
        )])),
        0,
    );
    match a.iter().find(|x| matches!(x, HubAction::ApplyPush { .. })) {
        Some(HubAction::ApplyPush { docs, .. }) => {
            assert_eq!(
                docs[0].0.source.as_deref(),
                Some(format!("edge:laptop/{device}").as_str())
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_welcome_states_the_grant_and_older_edges_are_refused() {
    let mut ro = grant();
    ro.read = Prefixes::parse(&["notes/".into(), "*".into()]).unwrap();
    ro.write = Prefixes::parse(&[]).unwrap();
    let (_, f) = hub_for(EDGE, 5, 5, ro.clone());
    let welcome = match &f[0] {
        Frame::Welcome {
            version: 5, grant, ..
        } => {
            assert_eq!(
                grant.as_ref().unwrap(),
                &WireGrant {
                    read: vec!["*".into(), "notes/".into()],
                    write: vec![],
                    never_delete: vec![],
                    hub_outputs: Vec::new(),
                }
            );
            f[0].encode()
        }
        other => panic!("{other:?}"),
    };
    // Version 1 to 4 edges (tokens, unsigned pushes, no purge orders, no
    // subject purges) are refused.
    for (min, max) in [(1, 1), (1, 2), (2, 2), (3, 3), (1, 3), (4, 4), (1, 4)] {
        let mut h = HubSession::new(0);
        let hello = machines::token_hello(EDGE, (min, max));
        let a = h.handle(HubEvent::Received(&hello), 0);
        assert!(
            closed_with(&a, "unsupported_version"),
            "{min}..{max}: {a:?}"
        );
        assert!(
            !a.iter()
                .any(|x| matches!(x, HubAction::Authenticate { .. }))
        );
    }
    // The edge offers 5 to 9 and reports the grant to its shell.
    let mut e = fresh_edge();
    let a = e.handle(EdgeEvent::Opened, 0);
    assert!(matches!(
        sent_edge(&a)[..],
        [Frame::Hello {
            min_version: 5,
            max_version: 9,
            ..
        }]
    ));
    let a = e.handle(EdgeEvent::Received(&welcome), 0);
    assert!(a.contains(&EdgeAction::Granted(WireGrant {
        read: vec!["*".into(), "notes/".into()],
        write: vec![],
        never_delete: vec![],
        hub_outputs: Vec::new(),
    })));
}

/// Storage of an edge: applying what the hub sent, then reading what to push.
#[test]
fn a_read_only_edge_pushes_nothing_it_received_even_a_conflict() {
    use futures::executor::block_on;
    use outpost::sync::driver::edge_storage;
    use outpost::{Database, OpenOptions, store::MemoryStore};
    block_on(async {
        let db = Database::open(MemoryStore::new(), OpenOptions::default())
            .await
            .unwrap();
        let cfg = EdgeConfig::new("main", "reader", "t");
        let (w1, w2) = (DbId([3; 16]), DbId([4; 16]));
        let v0 = ChangeVector::new().with(w1, 1);
        let remote = |versions: Vec<RawVersion>| outpost::db::RemoteDoc {
            id: "notes/card".into(),
            collection: Some("Cards".into()),
            versions,
            source: Some("hub".into()),
        };
        let apply = |docs, upto| EdgeAction::ApplyRemote {
            docs,
            upto,
            from: upto - 1,
            hub_db_id: HUB,
        };
        // First the document, then the conflict two writers made of it (the
        // hub keeps both versions: manual policy), in two batches.
        let ev = edge_storage(
            &db,
            &cfg,
            &apply(vec![remote(vec![version(v0.clone(), "{\"v\":0}")])], 1),
        )
        .await;
        assert!(matches!(ev, Some(EdgeEvent::Applied)));
        let a = version(v0.with(w1, 2), "{\"v\":\"a\"}");
        let b = version(v0.with(w2, 1), "{\"v\":\"b\"}");
        let ev = edge_storage(&db, &cfg, &apply(vec![remote(vec![b.clone()])], 2)).await;
        assert!(matches!(ev, Some(EdgeEvent::Applied)));
        let ev = edge_storage(&db, &cfg, &apply(vec![remote(vec![a, b])], 3)).await;
        assert!(matches!(ev, Some(EdgeEvent::Applied)));
        let held = db.get("notes/card").await.unwrap().unwrap();
        assert_eq!(held.conflicts.len(), 1, "the edge keeps the conflict");
        assert_eq!(held.meta.source.as_deref(), Some("hub"));
        // The edge's push: nothing but the checkpoint move.
        let mut e = EdgeSession::new(
            cfg.clone(),
            EdgePersisted {
                db_id: EDGE,
                pull_checkpoint: 3,
                checkpoint_hub: Some(HUB),
                rejected: Default::default(),
                resync_from: None,
            },
            0,
        );
        e.handle(EdgeEvent::Opened, 0);
        let welcome = welcome_v5(3);
        let mut acts = e.handle(EdgeEvent::Received(&welcome), 0);
        let mut pushed = Vec::new();
        for _ in 0..10 {
            let Some(read) = acts
                .iter()
                .find(|x| matches!(x, EdgeAction::ReadLocal { .. }))
            else {
                break;
            };
            let ev = edge_storage(&db, &cfg, read).await.unwrap();
            acts = e.handle(ev, 0);
            pushed.extend(sent_edge(&acts));
        }
        match &pushed[..] {
            [Frame::Push { docs, .. }] => assert!(docs.is_empty(), "pushed {docs:?}"),
            other => panic!("{other:?}"),
        }
    });
}

/// Class 2 of the hostile-edge issue: the hub's last etag is in every
/// `Welcome`, so "not above the hub's last etag" proves nothing. An edge may
/// claim only hub history it was sent and acknowledged.
#[test]
fn an_edge_may_claim_only_hub_history_it_was_sent() {
    let ok = || ChangeVector::new().with(EDGE, 3);
    // Sent up to 50 (its pull checkpoint): 80 is below the hub's last etag
    // (100), and still forged.
    let mut h = open_hub_from(50);
    let a = h.handle(
        HubEvent::Received(&push(vec![wire("notes/a", ok().with(HUB, 80), "{}")])),
        0,
    );
    assert_eq!(
        rejected(&a),
        Some(("forged_change_vector".to_string(), "notes/a".to_string()))
    );
    let a = h.handle(
        HubEvent::Received(&push(vec![wire("notes/a", ok().with(HUB, 50), "{}")])),
        0,
    );
    assert!(a.iter().any(|x| matches!(x, HubAction::ApplyPush { .. })));
}

/// Nothing but the handshake before authentication: a `Ping` does not keep
/// an unauthenticated connection open, and the `Hello` deadline holds.
#[test]
fn nothing_but_a_hello_keeps_an_unauthenticated_connection() {
    let mut h = HubSession::new(0).with_hello_timeout(1_000);
    let a = h.handle(HubEvent::Received(&Frame::Ping { nonce: 1 }.encode()), 10);
    assert!(matches!(
        sent(&a).first(),
        Some(Frame::Error { code, .. }) if code == "protocol"
    ));
    assert!(h.is_closed());
    let mut h = HubSession::new(0).with_hello_timeout(1_000);
    assert!(h.handle(HubEvent::Tick, 900).is_empty());
    let a = h.handle(HubEvent::Tick, 1_001);
    assert!(matches!(
        sent(&a).first(),
        Some(Frame::Error { code, .. }) if code == "timeout"
    ));
    assert!(h.is_closed());
}

#[test]
fn the_welcome_states_the_deletion_guards_and_the_edge_keeps_them() {
    let mut g = grant();
    g.never_delete = vec!["Invoices".into()];
    let (_, f) = hub_for(EDGE, 5, 5, g);
    let welcome = match &f[0] {
        Frame::Welcome { grant, .. } => {
            assert_eq!(grant.as_ref().unwrap().never_delete, ["Invoices"]);
            f[0].encode()
        }
        other => panic!("{other:?}"),
    };
    let mut e = fresh_edge();
    e.handle(EdgeEvent::Opened, 0);
    let a = e.handle(EdgeEvent::Received(&welcome), 0);
    assert!(
        a.contains(&EdgeAction::KeepGuards(vec!["Invoices".into()])),
        "{a:?}"
    );
}
