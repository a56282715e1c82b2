//! What the hub sends: reads filtered by the grant, the window, shared feed pages.

use super::*;

/// What a hub session of protocol `version` sends of a page holding a
/// plain document, an output of an index the hub shares (`WardCensus`), one
/// of an index it keeps (`MonthlyStatus`), and a shared output outside the
/// read prefixes: ids of the documents sent.
fn sent_of_outputs(version: u16) -> Vec<String> {
    let mut h = HubSession::new(0);
    let mut hello = Frame::decode(&hello(), MAX_FRAME_BYTES).unwrap();
    if let Frame::Hello { max_version, .. } = &mut hello {
        *max_version = version;
    }
    h.handle(HubEvent::Received(&hello.encode()), 0);
    let mut g = grant();
    g.read = Prefixes::parse(&[
        "notes/".into(),
        "wardcensus/".into(),
        "monthlystatus/".into(),
    ])
    .unwrap();
    g.hub_outputs = vec!["WardCensus".into()];
    let a = h.handle(
        HubEvent::Authorized {
            grant: g,
            hub_db_id: HUB,
            hub_last_etag: 4,
            push_checkpoint: 0,
            pending: 0,
            pull_from: 0,
            batch_head: (0, [0; 32]),
            purge: None,
            resync: None,
        },
        0,
    );
    match &sent(&a)[0] {
        Frame::Welcome { grant, .. } => assert_eq!(
            grant.as_ref().unwrap().hub_outputs,
            if version >= 9 {
                vec!["WardCensus".to_string()]
            } else {
                vec![]
            }
        ),
        other => panic!("{other:?}"),
    }
    let output = |id: &str, coll: &str, etag: u64| {
        let mut d = doc(id, etag, 5);
        d.meta.collection = Some(coll.into());
        d.meta.flags = DocFlags(DocFlags::FROM_INDEX);
        d
    };
    let docs = vec![
        doc("notes/1", 1, 5),
        output("WardCensus/north", "WardCensus", 2),
        output(r#"MonthlyStatus/["L1","2026-02"]"#, "MonthlyStatus", 3),
        output("elsewhere/south", "WardCensus", 4),
    ];
    let a = h.handle(
        HubEvent::ChangesRead {
            docs: FeedPage::new(docs),
            complete: true,
            last_etag: 4,
            horizon: 0,
            compacted: 0,
        },
        0,
    );
    sent(&a)
        .into_iter()
        .flat_map(|f| match f {
            Frame::Changes { docs, .. } => docs.into_iter().map(|d| d.id).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Index outputs stay at the hub except those of the indexes it shares,
/// sent to sessions of protocol 9 within their read prefixes; a session of
/// protocol 8 (which would not keep them read-only) is sent none.
#[test]
fn only_shared_outputs_leave_the_hub_and_only_to_protocol_9() {
    assert_eq!(sent_of_outputs(9), ["notes/1", "WardCensus/north"]);
    assert_eq!(sent_of_outputs(8), ["notes/1"]);
}

#[test]
fn the_hub_filters_reads_and_never_has_more_than_the_window_in_flight() {
    let mut h = open_hub();
    let mut in_flight = 0;
    let mut etag = 0;
    let mut sent_ids = Vec::new();
    // Feed reads until the window is full: each read returns 500 docs, half
    // outside the read prefixes.
    for _ in 0..WINDOW + 2 {
        let docs: Vec<RawDoc> = (0..500)
            .map(|i| {
                etag += 1;
                let id = if i % 2 == 0 {
                    format!("notes/{etag}")
                } else {
                    format!("secret/{etag}")
                };
                doc(&id, etag, 100)
            })
            .collect();
        let a = h.handle(
            HubEvent::ChangesRead {
                docs: FeedPage::new(docs),
                complete: false,
                last_etag: 1_000_000,
                horizon: 0,
                compacted: 0,
            },
            0,
        );
        for f in sent(&a) {
            if let Frame::Changes { docs, .. } = f {
                in_flight += 1;
                sent_ids.extend(docs.into_iter().map(|d| d.id));
            }
        }
        let reads = a
            .iter()
            .filter(|x| matches!(x, HubAction::ReadChanges { .. }))
            .count();
        if in_flight >= WINDOW {
            assert_eq!(
                reads, 0,
                "the hub reads more while {in_flight} batches are unacked"
            );
            break;
        }
    }
    assert_eq!(in_flight, WINDOW);
    assert!(sent_ids.iter().all(|id| id.starts_with("notes/")));
    assert!(!sent_ids.is_empty());
}

/// Sessions woken by one commit share the page of the feed they read
/// (`outpost::sync::feed`). A session that may read every document of it
/// sends the page's shared batch: byte for byte the frame it would have
/// built alone, cut at `BATCH_BYTES` like any batch. A session that may
/// not read all of it filters the same page for itself, whichever session
/// used the page first.
#[test]
fn a_shared_page_is_sent_whole_only_to_sessions_that_may_read_all_of_it() {
    let wide = Grant {
        read: Prefixes::parse(&["notes/".into(), "secret/".into()]).unwrap(),
        ..grant()
    };
    // 400 documents of ~2 KiB, alternating scopes: more than one batch.
    let docs: Vec<RawDoc> = (1..=400u64)
        .map(|etag| {
            let p = if etag % 2 == 0 { "notes" } else { "secret" };
            doc(&format!("{p}/{etag}"), etag, 2000)
        })
        .collect();
    let mut k = 0;
    let mut bytes = 0;
    for d in &docs {
        let len = outpost::sync::wire_doc(d).encoded_len();
        if k > 0 && bytes + len > outpost::sync::BATCH_BYTES {
            break;
        }
        bytes += len;
        k += 1;
    }
    assert!(k > 0 && k < docs.len(), "the page is cut: {k}");
    let expected = Frame::Changes {
        upto: docs[k - 1].meta.etag,
        docs: docs[..k].iter().map(outpost::sync::wire_doc).collect(),
    }
    .encode();
    let page = FeedPage::new(docs);
    let read = |page: &std::sync::Arc<FeedPage>| HubEvent::ChangesRead {
        docs: page.clone(),
        complete: true,
        last_etag: 400,
        horizon: 0,
        compacted: 0,
    };
    for narrow_first in [true, false] {
        let page = FeedPage::new(page.docs().to_vec());
        let (mut w, _) = hub_for(DbId([3; 16]), 5, 5, wide.clone());
        let (mut n, _) = hub_for(DbId([4; 16]), 5, 5, grant());
        let (wa, na) = if narrow_first {
            let na = n.handle(read(&page), 0);
            (w.handle(read(&page), 0), na)
        } else {
            let wa = w.handle(read(&page), 0);
            (wa, n.handle(read(&page), 0))
        };
        let first_send = wa.iter().find_map(|a| match a {
            HubAction::Send(b) => Some(b.clone()),
            _ => None,
        });
        assert_eq!(
            first_send.as_ref(),
            Some(&expected),
            "the wide session's batch"
        );
        let narrow: Vec<String> = sent(&na)
            .into_iter()
            .flat_map(|f| match f {
                Frame::Changes { docs, .. } => docs.into_iter().map(|d| d.id).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert!(!narrow.is_empty());
        assert!(
            narrow.iter().all(|id| id.starts_with("notes/")),
            "the narrow session sent {narrow:?}"
        );
    }
}
