//! Entry points for the fuzz targets (`fuzz/`, docs/testing.md "Fuzzing")
//! and for the regression tests that replay what they found
//! (`crate/tests/fuzz_regressions.rs`). Built with the `fuzzing` feature (or
//! `testing`); not part of the API.
//!
//! Each `check_*` function feeds arbitrary bytes to one decoder and panics
//! only when a property fails: decoding never panics, and what decodes
//! re-encodes to bytes that decode to the same value. The image checks
//! (meta record, B+tree and free-list pages, the file store's headers and
//! WAL frames) open a whole database over the bytes and read everything back;
//! they recompute checksums first so mutations reach the decoders behind them.
//! Each `seeds_*` function returns real encodings to start a corpus from.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures::executor::block_on;
use serde_json::{Value, json};

use crate::codec::{get_u32, set_u32, set_u64};
use crate::cv::{ChangeVector, DbId};
use crate::db::{Database, OpenOptions, Origin};
use crate::doc::{self, Arrival, DocFlags, DocumentMeta, RawVersion};
use crate::store::fault::{FaultVfs, FileImages};
use crate::store::file::{
    DATA_FILE, FileStore, FileStoreOptions, WAL_FILE, reseal_headers, reseal_wal,
};
use crate::store::{Commit, Durability, MAX_META, MemoryStore, PAGE_SIZE, PageStore};
use crate::sync::frame::{Frame, MAX_FRAME_BYTES, WireDoc};

/// Sync frames: [`Frame::decode`] at the default frame limit.
pub fn check_frame(data: &[u8]) {
    if let Ok(f) = Frame::decode(data, MAX_FRAME_BYTES) {
        let again = Frame::decode(&f.encode(), MAX_FRAME_BYTES).expect("re-encoded frame decodes");
        assert_eq!(again, f, "frame round trip");
    }
}

/// Document records: [`doc::decode_record`], [`doc::decode_raw_doc`], and
/// the full layout with the arrivals section re-encoded.
pub fn check_record(data: &[u8]) {
    let _ = doc::decode_record(data);
    let _ = doc::decode_record_meta(data);
    let Ok(((id, meta, body, sibs), arrivals)) = doc::decode_raw_full(data) else {
        assert!(doc::decode_raw_doc(data).is_err());
        return;
    };
    let raw = doc::decode_raw_doc(data).expect("decode_raw_doc agrees with decode_raw_full");
    assert_eq!(raw.versions.len(), sibs.len() + 1);
    if id.len() > doc::MAX_ID_BYTES
        || meta
            .collection
            .as_ref()
            .is_some_and(|c| c.len() > doc::MAX_COLLECTION_BYTES)
    {
        return; // the encoder's callers never pass these (it debug-asserts)
    }
    let enc = doc::encode_record_full(&id, &meta, body, &sibs, &arrivals);
    let ((id2, meta2, body2, sibs2), arrivals2) =
        doc::decode_raw_full(&enc).expect("re-encoded record decodes");
    assert_eq!((&id2, &meta2, body2, &sibs2), (&id, &meta, body, &sibs));
    assert_eq!(arrivals2, arrivals);
}

/// Change vectors: the binary form ([`ChangeVector::decode`], canonical: it
/// re-encodes to the bytes it consumed) and the text form
/// ([`ChangeVector::parse_text`]).
pub fn check_change_vector(data: &[u8]) {
    if let Ok((cv, used)) = ChangeVector::decode(data) {
        let mut enc = Vec::new();
        cv.encode(&mut enc);
        assert_eq!(enc, data[..used], "binary change vector round trip");
        assert_eq!(cv.encoded_len(), used);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cv) = ChangeVector::parse_text(text)
    {
        let canon = cv.to_text();
        let again = ChangeVector::parse_text(&canon).expect("to_text parses");
        assert_eq!(again, cv, "text change vector round trip");
        assert_eq!(again.to_text(), canon);
    }
}

/// Values of the origins tree: [`Origin::decode`] (canonical).
pub fn check_origin(data: &[u8]) {
    if let Some(o) = Origin::decode(data) {
        assert_eq!(o.encode(), data, "origin round trip");
    }
}

/// Local records with a codec of their own, chosen by the first byte: 0,
/// an identity's served record at the hub
/// ([`crate::sync::purge::Served::decode`]); 1, a database's deletion
/// guards ([`crate::policy::DeletionGuards::decode`]). What decodes encodes
/// back to the same bytes (guards: once normalised) and decodes the same.
pub fn check_local_record(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which {
        0 => {
            if let Some(s) = crate::sync::purge::Served::decode(rest) {
                // Format 1 (protocol 4 hubs) is written back as format 2.
                if rest.first() == Some(&2) {
                    assert_eq!(s.encode(), rest, "served record round trip");
                }
                let again = crate::sync::purge::Served::decode(&s.encode());
                assert_eq!(again.as_ref(), Some(&s), "served record upgrade");
                let _ = crate::sync::purge::plan(&s, &["a/".into()], rest.len() % 2 == 0);
            }
        }
        2 => {
            if let Some(m) = crate::sync::forget::Marker::decode(rest) {
                assert_eq!(m.encode(), rest, "purge marker round trip");
            }
        }
        _ => {
            if let Some(g) = crate::policy::DeletionGuards::decode(rest) {
                let again = crate::policy::DeletionGuards::decode(&g.encode());
                assert_eq!(again.as_ref(), Some(&g), "guards round trip");
                let _ = g.protects(Some("Invoices"));
            }
        }
    }
}

/// One line of a JSON-lines import ([`crate::jsonl::parse_import_line`]):
/// what parses is written back as an export line and parses the same.
pub fn check_jsonl_line(data: &[u8]) {
    let _ = crate::jsonl::line_weight(data);
    // The lines of `data` are the same fed whole to `read_line_bounded` and
    // in pieces of any size to `Lines` (what a running hub's import does
    // with a body's pieces).
    let whole = {
        let mut r = data;
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match crate::jsonl::read_line_bounded(&mut r, &mut buf, 64) {
                Ok(crate::jsonl::LineRead::Eof) | Err(_) => break out,
                Ok(read) => out.push((read, buf.clone())),
            }
        }
    };
    let piece = usize::from(data.first().copied().unwrap_or(0) % 7) + 1;
    let mut lines = crate::jsonl::Lines::new(64);
    let mut pieces = Vec::new();
    for mut p in data.chunks(piece) {
        while !p.is_empty() {
            if let Some(read) = lines.take(&mut p) {
                pieces.push((read, lines.text().to_vec()));
            }
        }
    }
    let last = lines.end();
    if last != crate::jsonl::LineRead::Eof {
        pieces.push((last, lines.text().to_vec()));
    }
    let text = |v: &[(crate::jsonl::LineRead, Vec<u8>)]| {
        v.iter()
            .map(|(r, t)| match r {
                crate::jsonl::LineRead::Line(_) => (*r, t.clone()),
                _ => (*r, Vec::new()),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(text(&pieces), text(&whole), "lines in pieces of {piece}");
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = crate::jsonl::parse_import_line(line) else {
        return;
    };
    let mut obj = match d.body.clone() {
        Value::Object(o) => o,
        other => panic!("import body is not an object: {other}"),
    };
    let mut meta = serde_json::Map::new();
    meta.insert("@id".into(), json!(d.id));
    if let Some(c) = &d.collection {
        meta.insert("@collection".into(), json!(c));
    }
    obj.insert("@metadata".into(), Value::Object(meta));
    let back = Value::Object(obj).to_string();
    let again = crate::jsonl::parse_import_line(&back).expect("re-written line parses");
    assert_eq!((&again.id, &again.collection), (&d.id, &d.collection));
    assert!(
        same_json(&again.body, &d.body),
        "import line round trip: {again:?} != {d:?}"
    );
}

/// JSON equality, numbers exactly: serde_json is built with
/// `float_roundtrip`, so a number written back and read again is the same
/// f64 (-3e54 moved by one ULP without it).
fn same_json(a: &Value, b: &Value) -> bool {
    a == b
}

// ---------------------------------------------------------------------------
// Database images

/// A database image: the meta record and the pages of a memory store.
#[derive(Clone)]
struct Image {
    meta: Vec<u8>,
    pages: Vec<Vec<u8>>,
}

/// A small real database: documents in two collections, deletions (free
/// pages), a body large enough for overflow pages.
fn sample() -> &'static Image {
    static S: OnceLock<Image> = OnceLock::new();
    S.get_or_init(|| {
        block_on(async {
            let store = Arc::new(MemoryStore::new());
            let db = Database::open(store.clone(), OpenOptions::default())
                .await
                .expect("open a memory database");
            fill(&db).await;
            db.close().await.expect("close");
            store.reopen();
            let meta = store
                .read_meta()
                .await
                .expect("meta")
                .expect("a meta record");
            let mut pages = Vec::new();
            for no in 1.. {
                match store.read_page(no).await {
                    Ok(p) => pages.push(p.to_vec()),
                    Err(_) => break,
                }
            }
            Image { meta, pages }
        })
    })
}

async fn fill<S: PageStore>(db: &Database<S>) {
    for i in 0..40 {
        let coll = if i % 2 == 0 { "Notes" } else { "Tasks" };
        let body = json!({"n": i, "text": "x".repeat(i * 7), "@metadata": {"@collection": coll}});
        db.put(&format!("docs/{i:03}"), body).await.expect("put");
    }
    db.put("big/1", json!({"blob": "y".repeat(3 * PAGE_SIZE)}))
        .await
        .expect("put");
    for i in (0..40).step_by(3) {
        db.delete(&format!("docs/{i:03}")).await.expect("delete");
    }
}

/// Opens the image in a memory store and reads everything back.
fn open_image(img: Image) {
    block_on(async {
        let store = Arc::new(MemoryStore::new());
        let pages = img
            .pages
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i as u64 + 1, Arc::new(p)))
            .collect();
        let commit = Commit {
            pages,
            meta: img.meta,
            durability: Durability::Relaxed,
        };
        if store.commit(commit).await.is_err() {
            return;
        }
        if let Ok(db) = Database::open(store, OpenOptions::default()).await {
            read_all(&db).await;
        }
    })
}

/// Reads every part of an open database; errors are fine, panics are not.
async fn read_all<S: PageStore>(db: &Database<S>) {
    let _ = db.integrity_check().await;
    let _ = db.count().await;
    let _ = db.scan("", None, 1000).await;
    let _ = db.changes(0, 1000).await;
    let _ = db.changes_raw(0, 1000).await;
    let _ = db.get("docs/001").await;
    let _ = db.get("big/1").await;
    let _ = db.put("fuzz/1", json!({"a": 1})).await;
    let _ = db.delete("docs/002").await;
    let _ = db.integrity_check().await;
    let _ = db.close().await;
}

/// Recomputes a page's number and checksum (kind and content stay fuzzed).
fn seal_page(p: &mut Vec<u8>, no: u64) {
    p.resize(PAGE_SIZE, 0);
    set_u64(p, 4, no);
    crate::btree::set_checksum(p);
}

/// Recomputes a meta record's trailing CRC-32.
fn seal_meta(m: &mut [u8]) {
    if m.len() >= 4 {
        let n = m.len() - 4;
        let crc = crc32fast::hash(&m[..n]);
        set_u32(m, n, crc);
    }
}

/// The meta record: arbitrary bytes (CRC fixed) over the sample's pages.
pub fn check_meta(data: &[u8]) {
    let mut img = sample().clone();
    img.meta = data[..data.len().min(MAX_META)].to_vec();
    seal_meta(&mut img.meta);
    open_image(img);
}

/// B+tree pages: the first byte picks a page of the sample, the rest
/// replaces it (number and checksum fixed).
pub fn check_page(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut img = sample().clone();
    let i = usize::from(sel) % img.pages.len();
    img.pages[i] = rest.to_vec();
    seal_page(&mut img.pages[i], i as u64 + 1);
    open_image(img);
}

/// Free-list pages: like [`check_page`], over the sample's free-list pages
/// only, their kind kept.
pub fn check_freelist(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut img = sample().clone();
    let free: Vec<usize> = (0..img.pages.len())
        .filter(|&i| img.pages[i][12] == crate::btree::KIND_FREELIST)
        .collect();
    let Some(&i) = free.get(usize::from(sel) % free.len().max(1)) else {
        return;
    };
    img.pages[i] = rest.to_vec();
    img.pages[i].resize(PAGE_SIZE, 0);
    img.pages[i][12] = crate::btree::KIND_FREELIST;
    seal_page(&mut img.pages[i], i as u64 + 1);
    open_image(img);
}

// ---------------------------------------------------------------------------
// The file store

const DIR: &str = "/db";

/// The file store: `u32` LE data-file length, the data file, the WAL. Header
/// and frame checksums are recomputed; then the store recovers, a database
/// opens over it and everything is read.
pub fn check_file_store(data: &[u8]) {
    let Some(n) = get_u32(data, 0) else {
        return;
    };
    let rest = &data[4..];
    let n = (n as usize).min(rest.len());
    let (mut dat, mut wal) = (rest[..n].to_vec(), rest[n..].to_vec());
    reseal_headers(&mut dat);
    reseal_wal(&mut wal);
    let mut files = FileImages::new();
    files.insert(Path::new(DIR).join(DATA_FILE), dat);
    if !wal.is_empty() {
        files.insert(Path::new(DIR).join(WAL_FILE), wal);
    }
    let opts = FileStoreOptions {
        vfs: Arc::new(FaultVfs::with_files(files)),
        ..FileStoreOptions::default()
    };
    let Ok(store) = FileStore::open(PathBuf::from(DIR), opts) else {
        return;
    };
    block_on(async {
        if let Ok(db) = Database::open(store, OpenOptions::default()).await {
            read_all(&db).await;
        }
    });
}

// ---------------------------------------------------------------------------
// Seeds

/// Real encodings for each target's corpus, by target name (the names of
/// `fuzz/fuzz_targets/*.rs`).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "frame" => seed_frames(),
        "record" => seed_records(),
        "change_vector" => {
            let cv = sample_cv(3);
            let mut b = Vec::new();
            cv.encode(&mut b);
            vec![b, cv.to_text().into_bytes(), Vec::new()]
        }
        "origin" => vec![
            Origin::default().encode(),
            Origin {
                high_water: 42,
                owner: Some("edge:alice".into()),
            }
            .encode(),
        ],
        "local_record" => vec![
            [
                &[0u8][..],
                &crate::sync::purge::plan(
                    &crate::sync::purge::Served {
                        prefixes: vec!["a/".into(), "b/".into()],
                        ..Default::default()
                    },
                    &["a/".into()],
                    false,
                )
                .served
                .encode(),
            ]
            .concat(),
            [
                &[1u8][..],
                &crate::policy::DeletionGuards::new(["Invoices".to_string()]).encode(),
            ]
            .concat(),
            [
                &[0u8][..],
                &crate::sync::purge::Served {
                    prefixes: vec!["a/".into()],
                    owed: vec![3, 4],
                    ..Default::default()
                }
                .encode(),
            ]
            .concat(),
            [
                &[2u8][..],
                &crate::sync::forget::Marker {
                    number: 3,
                    time_ms: 1_700_000_000_000,
                    by: "dpo".into(),
                    reason: "request 7".into(),
                    request: "1 id".into(),
                    removed: 1,
                    ids_sha256: [5; 32],
                }
                .encode(),
            ]
            .concat(),
        ],
        "jsonl" => vec![
            br#"{"name":"Ada","@metadata":{"@id":"people/1","@collection":"People"}}"#.to_vec(),
            br#"{"id":"x/2","n":[1,2.5,-3e10,null,true,{"k":"\u00e9"}]}"#.to_vec(),
        ],
        "meta" => vec![sample().meta.clone()],
        "page" => (0..sample().pages.len())
            .map(|i| [&[i as u8][..], &sample().pages[i]].concat())
            .collect(),
        "freelist" => sample()
            .pages
            .iter()
            .filter(|p| p[12] == crate::btree::KIND_FREELIST)
            .map(|p| [&[0u8][..], p].concat())
            .collect(),
        "file_store" => vec![seed_file_store()],
        _ => Vec::new(),
    }
}

/// Writes the seeds of `target` to `<fuzz_dir>/corpus/<target>/seed-N`
/// (the fuzz targets call it before fuzzing; errors are ignored: fuzzing
/// then starts from an empty corpus).
pub fn write_seeds(target: &str, fuzz_dir: &str) {
    let dir = Path::new(fuzz_dir).join("corpus").join(target);
    if std::fs::create_dir_all(&dir).is_ok() {
        for (i, s) in seeds(target).iter().enumerate() {
            let _ = std::fs::write(dir.join(format!("seed-{i}")), s);
        }
    }
}

fn sample_cv(n: u8) -> ChangeVector {
    ChangeVector::from_entries((1..=n).map(|i| (DbId([i; 16]), u64::from(i) * 1000)))
        .expect("a valid change vector")
}

fn seed_frames() -> Vec<Vec<u8>> {
    let docs = vec![WireDoc {
        id: "docs/1".into(),
        collection: Some("Notes".into()),
        versions: vec![RawVersion {
            change_vector: sample_cv(2),
            last_modified_ms: 1_700_000_000_000,
            deleted: false,
            body: br#"{"a":1}"#.to_vec(),
        }],
    }];
    let frames = [
        Frame::Ping { nonce: 7 },
        Frame::Pong { nonce: 7 },
        Frame::Error {
            code: "protocol".into(),
            message: "bad".into(),
        },
        Frame::Push {
            upto: 3,
            seq: 1,
            prev: [0; 32],
            signature: vec![1; 64],
            docs,
        },
        Frame::Challenge {
            version: 3,
            nonce: [2; 32],
            hub_id: crate::DbId([3; 16]),
        },
        Frame::Proof {
            signature: vec![4; 64],
        },
    ];
    frames.iter().map(Frame::encode).collect()
}

fn seed_records() -> Vec<Vec<u8>> {
    let meta = DocumentMeta {
        collection: Some("Notes".into()),
        change_vector: sample_cv(2),
        etag: 9,
        last_modified_ms: 1_700_000_000_000,
        flags: DocFlags::default(),
        source: Some("upstream:main".into()),
    };
    let sib = RawVersion {
        change_vector: sample_cv(3),
        last_modified_ms: 5,
        deleted: true,
        body: Vec::new(),
    };
    let arr = |e| Arrival {
        etag: e,
        device: DbId([7; 16]),
    };
    vec![
        doc::encode_record("docs/1", &meta, br#"{"a":1}"#),
        doc::encode_record_with(
            "docs/2",
            &meta,
            br#"{"b":[1,2]}"#,
            std::slice::from_ref(&sib),
        ),
        doc::encode_record_full("docs/3", &meta, b"{}", &[sib], &[arr(3), arr(4)]),
    ]
}

fn seed_file_store() -> Vec<u8> {
    let vfs = Arc::new(FaultVfs::new());
    let opts = FileStoreOptions {
        vfs: vfs.clone(),
        ..FileStoreOptions::default()
    };
    let store = FileStore::open(PathBuf::from(DIR), opts).expect("open a file store");
    block_on(async {
        let db = Database::open(store, OpenOptions::default())
            .await
            .expect("open");
        fill(&db).await;
        // Leave the last writes in the WAL: no close.
        std::mem::forget(db);
    });
    let files = vfs.current_files();
    let dat = files
        .get(&Path::new(DIR).join(DATA_FILE))
        .cloned()
        .unwrap_or_default();
    let wal = files
        .get(&Path::new(DIR).join(WAL_FILE))
        .cloned()
        .unwrap_or_default();
    let mut out = (dat.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&dat);
    out.extend_from_slice(&wal);
    out
}
