use super::*;
use crate::cv::ChangeVector;
use proptest::prelude::*;

fn doc(id: &str) -> WireDoc {
    WireDoc {
        id: id.into(),
        collection: Some("Notes".into()),
        versions: vec![
            RawVersion {
                change_vector: ChangeVector::new().with(DbId([7; 16]), 3),
                last_modified_ms: 1_700_000_000_000,
                deleted: false,
                body: br#"{"a":1}"#.to_vec(),
            },
            RawVersion {
                change_vector: ChangeVector::new().with(DbId([8; 16]), 1),
                last_modified_ms: -5,
                deleted: true,
                body: Vec::new(),
            },
        ],
    }
}

fn samples() -> Vec<Frame> {
    vec![
        Frame::Hello {
            min_version: 1,
            max_version: 1,
            db_id: DbId([1; 16]),
            database: "main".into(),
            identity: "laptop-7".into(),
            credential: "s3cret".into(),
            pull_checkpoint: 42,
            checkpoint_hub: DbId([3; 16]),
            auth: AuthMode::Token,
            key: Vec::new(),
        },
        Frame::Hello {
            min_version: 3,
            max_version: 3,
            db_id: DbId([1; 16]),
            database: "main".into(),
            identity: "laptop-7".into(),
            credential: "code-1".into(),
            pull_checkpoint: 42,
            checkpoint_hub: DbId([3; 16]),
            auth: AuthMode::Enroll,
            key: vec![4; 65],
        },
        Frame::Challenge {
            version: 3,
            nonce: [7; 32],
            hub_id: DbId([2; 16]),
        },
        Frame::Proof {
            signature: vec![9; 64],
        },
        Frame::Welcome {
            version: 1,
            hub_db_id: DbId([2; 16]),
            push_checkpoint: 9,
            hub_last_etag: 100,
            pending: 50,
            max_frame_bytes: 1 << 20,
            heartbeat_ms: 15_000,
            grant: None,
            batch_seq: 0,
            batch_head: [0; 32],
        },
        Frame::Welcome {
            version: 2,
            hub_db_id: DbId([2; 16]),
            push_checkpoint: 9,
            hub_last_etag: 100,
            pending: 50,
            max_frame_bytes: 1 << 20,
            heartbeat_ms: 15_000,
            grant: Some(WireGrant {
                read: vec!["*".into(), "notes/".into()],
                write: vec![],
                never_delete: vec![],
                hub_outputs: vec![],
            }),
            batch_seq: 0,
            batch_head: [0; 32],
        },
        Frame::Welcome {
            version: 3,
            hub_db_id: DbId([2; 16]),
            push_checkpoint: 9,
            hub_last_etag: 100,
            pending: 50,
            max_frame_bytes: 1 << 20,
            heartbeat_ms: 15_000,
            grant: Some(WireGrant {
                read: vec!["notes/".into()],
                write: vec!["notes/".into()],
                never_delete: vec![],
                hub_outputs: vec![],
            }),
            batch_seq: 17,
            batch_head: [5; 32],
        },
        Frame::Welcome {
            version: 5,
            hub_db_id: DbId([2; 16]),
            push_checkpoint: 9,
            hub_last_etag: 100,
            pending: 50,
            max_frame_bytes: 1 << 20,
            heartbeat_ms: 15_000,
            grant: Some(WireGrant {
                read: vec!["notes/".into()],
                write: vec!["notes/".into()],
                never_delete: vec!["Invoices".into(), "Payments".into()],
                hub_outputs: vec![],
            }),
            batch_seq: 17,
            batch_head: [5; 32],
        },
        Frame::Welcome {
            version: 9,
            hub_db_id: DbId([2; 16]),
            push_checkpoint: 9,
            hub_last_etag: 100,
            pending: 50,
            max_frame_bytes: 1 << 20,
            heartbeat_ms: 15_000,
            grant: Some(WireGrant {
                read: vec!["wardcensus/".into()],
                write: vec![],
                never_delete: vec!["Invoices".into()],
                hub_outputs: vec!["WardCensus".into(), "LoanStatus".into()],
            }),
            batch_seq: 17,
            batch_head: [5; 32],
        },
        Frame::Changes {
            upto: 7,
            docs: vec![doc("n/1"), doc("n/2")],
        },
        Frame::Changes {
            upto: 8,
            docs: vec![],
        },
        Frame::ChangesAck { upto: 7 },
        Frame::Live { upto: 8 },
        Frame::Push {
            upto: 3,
            seq: 18,
            prev: [5; 32],
            signature: vec![1; 64],
            docs: vec![doc("é/ü")],
        },
        Frame::PushAck {
            upto: 3,
            applied: 1,
            conflicts: 0,
            resolved: 2,
        },
        Frame::PushRejected {
            upto: 3,
            code: "write_denied".into(),
            id: "x".into(),
            rule: "write prefixes [a/]".into(),
            message: "no".into(),
        },
        Frame::Ping { nonce: 5 },
        Frame::Pong { nonce: 5 },
        Frame::Error {
            code: "protocol".into(),
            message: "bad".into(),
        },
        Frame::Purge {
            order: 7,
            reason: "revoked".into(),
            prefixes: vec!["".into(), "b/".into()],
            keep: vec!["b/c/".into()],
            ids: vec![[4; 32], [5; 32]],
        },
        Frame::PurgeReceipt {
            order: 7,
            removed: 12,
            ids_hash: [3; 32],
            signature: vec![1; 64],
        },
        Frame::Write {
            request: 3,
            signature: vec![9; 64],
            ops: vec![
                WireWrite {
                    id: "names/ada".into(),
                    collection: Some("Names".into()),
                    expect: WireExpect::Missing,
                    deleted: false,
                    body: b"{\"o\":1}".to_vec(),
                },
                WireWrite {
                    id: "names/bob".into(),
                    collection: None,
                    expect: WireExpect::Cv(ChangeVector::new().with(DbId([1; 16]), 4)),
                    deleted: true,
                    body: Vec::new(),
                },
                WireWrite {
                    id: "names/cy".into(),
                    collection: None,
                    expect: WireExpect::Any,
                    deleted: false,
                    body: b"{}".to_vec(),
                },
            ],
        },
        Frame::WriteResult {
            request: 3,
            answer: WriteAnswer::Applied {
                etag: 40,
                change_vectors: vec![
                    ChangeVector::new().with(DbId([2; 16]), 40),
                    ChangeVector::default(),
                ],
            },
        },
        Frame::WriteResult {
            request: 4,
            answer: WriteAnswer::Conflict {
                id: "names/ada".into(),
                current: ChangeVector::new().with(DbId([2; 16]), 40),
            },
        },
        Frame::Replace {
            request: 1,
            chain: vec![vec![0x30, 1, 2], vec![0x30; 300]],
        },
        Frame::ReplaceResult {
            request: 1,
            code: "replace_admin".into(),
            message: "no".into(),
        },
        Frame::WriteResult {
            request: 5,
            answer: WriteAnswer::Refused {
                code: "write_denied".into(),
                id: "x".into(),
                rule: "write prefixes".into(),
                message: "no".into(),
            },
        },
    ]
}

#[test]
fn every_frame_roundtrips_and_every_truncation_fails() {
    for f in samples() {
        let b = f.encode();
        assert_eq!(Frame::decode(&b, MAX_FRAME_BYTES).unwrap(), f);
        for k in 0..b.len() {
            assert!(
                Frame::decode(&b[..k], MAX_FRAME_BYTES).is_err(),
                "{f:?} {k}"
            );
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Frame::decode(&long, MAX_FRAME_BYTES).is_err());
        assert!(matches!(
            Frame::decode(&b, b.len() - 1),
            Err(FrameError::TooLarge { .. })
        ));
    }
    assert_eq!(Frame::decode(&[0], 10), Err(FrameError::UnknownType(0)));
}

#[test]
fn fixed_bytes_for_a_sample_frame() {
    // wasm32 and x86_64 must produce these exact bytes.
    let b = Frame::ChangesAck { upto: 0x0102 }.encode();
    assert_eq!(b, vec![4, 2, 1, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn a_version_1_welcome_keeps_the_version_1_layout() {
    // Version 1 edges decode exactly these 51 bytes: no grant.
    let f = |version| Frame::Welcome {
        version,
        hub_db_id: DbId([2; 16]),
        push_checkpoint: 9,
        hub_last_etag: 100,
        pending: 50,
        max_frame_bytes: 1 << 20,
        heartbeat_ms: 15_000,
        grant: Some(WireGrant {
            read: vec!["notes/".into()],
            write: vec![],
            never_delete: if version >= 4 {
                vec!["Invoices".into()]
            } else {
                vec![]
            },
            hub_outputs: if version >= 9 {
                vec!["WardCensus".into()]
            } else {
                vec![]
            },
        }),
        batch_seq: 0x0102,
        batch_head: [7; 32],
    };
    let b = f(1).encode();
    assert_eq!(b.len(), 1 + 2 + 16 + 3 * 8 + 4 + 4);
    match Frame::decode(&b, MAX_FRAME_BYTES).unwrap() {
        Frame::Welcome { grant, .. } => assert_eq!(grant, None),
        other => panic!("{other:?}"),
    }
    // Version 2 appends the two prefix lists.
    let b2 = f(2).encode();
    assert_eq!(
        &b2[51..],
        &[1, 0, 6, 0, b'n', b'o', b't', b'e', b's', b'/', 0, 0]
    );
    // Version 3 appends the chain head.
    let b3 = f(3).encode();
    assert_eq!(b3.len(), b2.len() + 8 + 32);
    assert_eq!(&b3[b2.len()..b2.len() + 8], &[2, 1, 0, 0, 0, 0, 0, 0]);
    // Version 4 appends the guarded collections.
    let b4 = f(4).encode();
    assert_eq!(
        &b4[b3.len()..],
        &[1, 0, 8, 0, b'I', b'n', b'v', b'o', b'i', b'c', b'e', b's']
    );
    assert_eq!(Frame::decode(&b4, MAX_FRAME_BYTES).unwrap(), f(4));
    assert_eq!(negotiate(1, 1), None);
    assert_eq!(negotiate(1, 2), None);
    assert_eq!(negotiate(1, 3), None);
    // Version 5 keeps version 4's Welcome layout.
    let b5 = f(5).encode();
    assert_eq!((b5.len(), &b5[3..]), (b4.len(), &b4[3..]));
    assert_eq!(Frame::decode(&b5, MAX_FRAME_BYTES).unwrap(), f(5));
    assert_eq!(negotiate(1, 4), None, "a version 4 edge is refused");
    // Version 6 (hub-safety writes) keeps it too, and a version 5 edge is
    // still served.
    let b6 = f(6).encode();
    assert_eq!((b6.len(), &b6[3..]), (b4.len(), &b4[3..]));
    assert_eq!(negotiate(1, 5), Some(5), "a version 5 edge is served");
    assert_eq!(negotiate(5, 5), Some(5));
    // Version 7 (compaction's Resync) keeps it as well; 6 is still served.
    let b7 = f(7).encode();
    assert_eq!((b7.len(), &b7[3..]), (b4.len(), &b4[3..]));
    assert_eq!(negotiate(6, 6), Some(6), "a version 6 edge is served");
    // Version 8 (certificate replacement) keeps it as well; 7 is still
    // served.
    let b8 = f(8).encode();
    assert_eq!((b8.len(), &b8[3..]), (b4.len(), &b4[3..]));
    assert_eq!(negotiate(7, 7), Some(7), "a version 7 edge is served");
    // Version 9 appends the shared output collections; 8 is still served.
    let b9 = f(9).encode();
    assert_eq!(
        &b9[b8.len()..],
        &[
            1, 0, 10, 0, b'W', b'a', b'r', b'd', b'C', b'e', b'n', b's', b'u', b's'
        ]
    );
    assert_eq!(Frame::decode(&b9, MAX_FRAME_BYTES).unwrap(), f(9));
    assert_eq!(negotiate(8, 8), Some(8), "a version 8 edge is served");
    assert_eq!(negotiate(1, 10), Some(9));
    assert_eq!(negotiate(4, 10), Some(9));
    assert_eq!(negotiate(5, 10), Some(9));
    assert_eq!(negotiate(6, 10), Some(9));
    assert_eq!(negotiate(7, 10), Some(9));
    assert_eq!(negotiate(8, 10), Some(9));
    assert_eq!(negotiate(9, 9), Some(9));
    assert_eq!(negotiate(10, 10), None);
    assert_eq!(negotiate(0, 0), None);
}

#[test]
fn fixed_bytes_of_the_version_3_handshake() {
    // wasm32 and x86_64 must produce these exact bytes.
    let c = Frame::Challenge {
        version: 3,
        nonce: [0xAB; 32],
        hub_id: DbId([0xCD; 16]),
    }
    .encode();
    let mut want = vec![12, 3, 0];
    want.extend([0xAB; 32]);
    want.extend([0xCD; 16]);
    assert_eq!(c, want);
    let p = Frame::Proof {
        signature: vec![1, 2],
    }
    .encode();
    assert_eq!(p, vec![13, 2, 0, 1, 2]);
    // A version 3 Hello ends with the auth byte and the key.
    let h = Frame::Hello {
        min_version: 3,
        max_version: 3,
        db_id: DbId([0; 16]),
        database: String::new(),
        identity: String::new(),
        credential: String::new(),
        pull_checkpoint: 0,
        checkpoint_hub: DbId([0; 16]),
        auth: AuthMode::Key,
        key: vec![4],
    }
    .encode();
    assert_eq!(&h[h.len() - 4..], &[0, 1, 0, 4]);
    // An unknown auth mode is malformed, not a panic.
    let mut bad = h.clone();
    let at = bad.len() - 4;
    bad[at] = 9;
    assert!(matches!(
        Frame::decode(&bad, MAX_FRAME_BYTES),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn fixed_bytes_of_the_version_5_purge_frames() {
    // wasm32 and x86_64 must produce these exact bytes.
    let p = Frame::Purge {
        order: 2,
        reason: "narrowed".into(),
        prefixes: vec!["a/".into()],
        keep: vec![],
        ids: vec![[7; 32]],
    }
    .encode();
    let mut want = vec![14, 2, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    want.extend(b"narrowed");
    want.extend([1, 0, 2, 0, b'a', b'/', 0, 0]);
    want.extend([1, 0, 0, 0]);
    want.extend([7; 32]);
    assert_eq!(p, want);
    assert_eq!(
        Frame::decode(&p, MAX_FRAME_BYTES).unwrap(),
        Frame::Purge {
            order: 2,
            reason: "narrowed".into(),
            prefixes: vec!["a/".into()],
            keep: vec![],
            ids: vec![[7; 32]],
        }
    );
    // A version 4 `Purge` (no id list) is malformed for a version 5 peer:
    // the handshake refuses version 4 before any could be sent.
    let v4 = &want[..want.len() - 36];
    assert!(matches!(
        Frame::decode(v4, MAX_FRAME_BYTES),
        Err(FrameError::Malformed(_))
    ));
    // An id count beyond what the frame holds is malformed, not an
    // allocation.
    let mut huge = want[..want.len() - 36].to_vec();
    huge.put_u32(u32::MAX);
    assert!(matches!(
        Frame::decode(&huge, MAX_FRAME_BYTES),
        Err(FrameError::Malformed(_))
    ));
    let r = Frame::PurgeReceipt {
        order: 2,
        removed: 3,
        ids_hash: [9; 32],
        signature: vec![5],
    }
    .encode();
    let mut want = vec![15, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
    want.extend([9; 32]);
    want.extend([1, 0, 5]);
    assert_eq!(r, want);
    // A list count beyond the limit is malformed, not an allocation.
    let mut bad = vec![14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    bad.put_u16(u16::MAX);
    assert!(matches!(
        Frame::decode(&bad, MAX_FRAME_BYTES),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn a_push_header_gives_its_count_without_decoding() {
    let f = Frame::Push {
        upto: 3,
        seq: 9,
        prev: [1; 32],
        signature: vec![2; 64],
        docs: vec![doc("a/1"), doc("a/2")],
    };
    let b = f.encode();
    let (n, rest) = push_header(&b).unwrap();
    assert_eq!(n, 2);
    assert_eq!(rest, b.len() - (1 + 8 + 8 + 32 + 2 + 64 + 4));
    assert_eq!(push_header(&b[..20]), None);
    assert_eq!(push_header(&Frame::Ping { nonce: 1 }.encode()), None);
}

#[test]
fn fixed_bytes_of_the_version_6_write_frames() {
    // wasm32 and x86_64 must produce these exact bytes.
    let w = want_write();
    let want = vec![
        16, 1, 0, 0, 0, 0, 0, 0, 0, // type, request
        0, 0, // no signature
        1, 0, // one document
        1, 0, b'a', 0, 0, // id, no collection
        0, // flags
        1, // expectation: missing
        2, 0, 0, 0, b'{', b'}', // body
    ];
    assert_eq!(w, want);
    assert_eq!(push_header(&w), Some((1, w.len() - 13)));
    let r = Frame::WriteResult {
        request: 1,
        answer: WriteAnswer::Conflict {
            id: "a".into(),
            current: ChangeVector::new().with(DbId([5; 16]), 2),
        },
    }
    .encode();
    let mut want = vec![17, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, b'a', 1, 0];
    want.extend([5; 16]);
    want.extend([2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r, want);
    // No document, more than 64, an unknown expectation or flag, a
    // deletion with a body, an unknown status: malformed.
    let mut zero = w[..11].to_vec();
    zero.extend([0, 0]);
    let mut many = w[..11].to_vec();
    many.extend([65, 0]);
    let mut expect = want_write();
    expect[19] = 3;
    let mut flags = want_write();
    flags[18] = 2;
    let mut deleted = want_write();
    deleted[18] = 1;
    let mut status = r.clone();
    status[9] = 3;
    for bad in [zero, many, expect, flags, deleted, status] {
        assert!(
            matches!(
                Frame::decode(&bad, MAX_FRAME_BYTES),
                Err(FrameError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

fn want_write() -> Vec<u8> {
    Frame::Write {
        request: 1,
        signature: vec![],
        ops: vec![WireWrite {
            id: "a".into(),
            collection: None,
            expect: WireExpect::Missing,
            deleted: false,
            body: b"{}".to_vec(),
        }],
    }
    .encode()
}

#[test]
fn huge_counts_do_not_allocate() {
    let mut b = vec![3];
    b.put_u64(0);
    b.put_u32(u32::MAX);
    assert!(matches!(
        Frame::decode(&b, MAX_FRAME_BYTES),
        Err(FrameError::Malformed(_))
    ));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Frame::decode(&b, MAX_FRAME_BYTES);
    }

    #[test]
    fn mutated_frames_never_panic(i in 0usize..400, v in any::<u8>(), which in 0usize..12) {
        let s = samples();
        let mut b = s[which % s.len()].encode();
        let k = i % b.len();
        b[k] = v;
        let _ = Frame::decode(&b, MAX_FRAME_BYTES);
    }
}

#[test]
fn fixed_bytes_of_the_version_7_resync_frame() {
    // wasm32 and x86_64 must produce these exact bytes.
    let f = Frame::Resync { horizon: 0x0102 };
    let want = vec![18, 2, 1, 0, 0, 0, 0, 0, 0];
    assert_eq!(f.encode(), want);
    assert_eq!(Frame::decode(&want, 64), Ok(f));
    // Truncated, or with trailing bytes: refused.
    assert!(Frame::decode(&want[..8], 64).is_err());
    let mut long = want.clone();
    long.push(0);
    assert!(Frame::decode(&long, 64).is_err());
    let f = Frame::Compacted { horizon: 7 };
    let want = vec![19, 7, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(f.encode(), want);
    assert_eq!(Frame::decode(&want, 64), Ok(f));
}

#[test]
fn fixed_bytes_of_the_version_8_replace_frames() {
    // wasm32 and x86_64 must produce these exact bytes.
    let f = Frame::Replace {
        request: 0x0102,
        chain: vec![vec![0x30, 0x01], vec![0x30]],
    };
    let want = vec![20, 2, 1, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0x30, 0x01, 1, 0, 0x30];
    assert_eq!(f.encode(), want);
    assert_eq!(Frame::decode(&want, 64), Ok(f));
    let f = Frame::ReplaceResult {
        request: 3,
        code: "x".into(),
        message: "ok".into(),
    };
    let want = vec![21, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'x', 2, 0, b'o', b'k'];
    assert_eq!(f.encode(), want);
    assert_eq!(Frame::decode(&want, 64), Ok(f));
    // No certificate, or more than the most: refused.
    let empty = vec![20, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(Frame::decode(&empty, 64).is_err());
    let mut many = vec![20, 1, 0, 0, 0, 0, 0, 0, 0, 9];
    for _ in 0..9 {
        many.extend_from_slice(&[1, 0, 0x30]);
    }
    assert!(Frame::decode(&many, 128).is_err());
}
