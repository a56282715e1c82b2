//! Unit tests of the JSON-lines module.

use super::*;
use serde_json::json;

#[test]
fn formats_timestamps() {
    assert_eq!(crate::doc::iso_time_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        crate::doc::iso_time_ms(951_782_400_123),
        "2000-02-29T00:00:00.123Z"
    );
    assert_eq!(
        crate::doc::iso_time_ms(1_795_343_760_000),
        "2026-11-22T10:36:00.000Z"
    );
    assert_eq!(crate::doc::iso_time_ms(-1), "1969-12-31T23:59:59.999Z");
}

#[test]
fn import_line_with_plain_id() {
    let d = parse_import_line(r#"{"id":"a/1","n":1}"#).unwrap();
    assert_eq!(d.id, "a/1");
    assert_eq!(d.collection, None);
    assert_eq!(d.body, json!({"id":"a/1","n":1}));
}

#[test]
fn import_line_with_metadata() {
    let d = parse_import_line(
        r#"{"n":1,"@metadata":{"@id":"a/1","@collection":"As","@etag":4,"@change-vector":"x"}}"#,
    )
    .unwrap();
    assert_eq!(d.id, "a/1");
    assert_eq!(d.collection.as_deref(), Some("As"));
    assert_eq!(d.body, json!({"n":1}));
}

#[test]
fn bounded_lines() {
    let input = b"short\n0123456789abcdef\nlast-no-newline";
    let mut r = std::io::BufReader::with_capacity(4, &input[..]);
    let mut buf = Vec::new();
    assert_eq!(
        read_line_bounded(&mut r, &mut buf, 8).unwrap(),
        LineRead::Line(6)
    );
    assert_eq!(buf, b"short\n");
    assert_eq!(
        read_line_bounded(&mut r, &mut buf, 8).unwrap(),
        LineRead::TooLong(17)
    );
    assert!(buf.capacity() <= 64 << 10);
    assert_eq!(
        read_line_bounded(&mut r, &mut buf, 100).unwrap(),
        LineRead::Line(15)
    );
    assert_eq!(buf, b"last-no-newline");
    assert_eq!(
        read_line_bounded(&mut r, &mut buf, 100).unwrap(),
        LineRead::Eof
    );
}

#[test]
fn lines_in_pieces_of_any_size_are_the_lines_read_whole() {
    let input: &[u8] = b"a\n\n0123456789abcdef\r\nmid\n0123456789\nlast";
    let whole = |max| {
        let mut r = std::io::BufReader::with_capacity(3, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let read = read_line_bounded(&mut r, &mut buf, max).unwrap();
            if read == LineRead::Eof {
                return out;
            }
            out.push((read, buf.clone()));
        }
    };
    for max in [4, 8, 11, 100] {
        let expected = whole(max);
        assert_eq!(expected.len(), 6, "max {max}: {expected:?}");
        // Every split into two pieces, and one byte at a time.
        let mut splits: Vec<Vec<&[u8]>> = (0..=input.len())
            .map(|i| vec![&input[..i], &input[i..]])
            .collect();
        splits.push(input.chunks(1).collect());
        for pieces in splits {
            let mut lines = Lines::new(max);
            let mut got = Vec::new();
            for mut piece in pieces.iter().copied() {
                while !piece.is_empty() {
                    if let Some(read) = lines.take(&mut piece) {
                        got.push((read, lines.text().to_vec()));
                    }
                }
            }
            let read = lines.end();
            if read != LineRead::Eof {
                got.push((read, lines.text().to_vec()));
            }
            assert_eq!(lines.end(), LineRead::Eof);
            // A line too long is reported, its text not compared (only its
            // beginning is kept, which depends on where it was cut).
            let strip = |v: &[(LineRead, Vec<u8>)]| {
                v.iter()
                    .map(|(r, t)| {
                        (
                            *r,
                            if matches!(r, LineRead::TooLong(_)) {
                                vec![]
                            } else {
                                t.clone()
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                strip(&got),
                strip(&expected),
                "max {max}, pieces {pieces:?}"
            );
        }
    }
}

#[test]
fn weights() {
    assert_eq!(line_weight(br#"{"a":"x,y:z"}"#), 13 + 2 * TOKEN_WEIGHT);
    assert_eq!(line_weight(br#"{"a":"\",["}"#), 12 + 2 * TOKEN_WEIGHT);
    assert_eq!(line_weight(b"[0,0,0]"), 7 + 3 * TOKEN_WEIGHT);
}

#[test]
fn import_batches_by_bytes_and_reports_bad_lines() {
    use crate::db::OpenOptions;
    use crate::store::MemoryStore;
    futures::executor::block_on(async {
        let db = Database::open(MemoryStore::new(), OpenOptions::default())
            .await
            .unwrap();
        let pad = "p".repeat(1000);
        let mut input = String::new();
        for i in 0..10 {
            input.push_str(&format!("{{\"id\":\"a/{i}\",\"pad\":\"{pad}\"}}\n"));
        }
        input.push_str("not json\n\n");
        input.push_str(&format!(
            "{{\"id\":\"b/1\",\"big\":\"{}\"}}\n",
            "x".repeat(MAX_LINE_BYTES)
        ));
        input.push_str("{\"id\":\"c/1\"}");
        let opts = ImportOptions {
            batch_bytes: 3000,
            ..ImportOptions::default()
        };
        let mut bad = Vec::new();
        let (st, r) = import(&db, input.as_bytes(), &opts, |e| {
            if let ImportEvent::BadLine { line, code, .. } = e {
                bad.push((line, code));
            }
        })
        .await;
        r.unwrap();
        assert_eq!(bad, [(11, "invalid_json"), (13, "too_large")]);
        assert_eq!((st.lines, st.imported, st.bad), (14, 11, 2));
        // 10 lines of ~1 KiB in batches of at most 3,000 bytes, then c/1.
        assert_eq!(st.batches, 5);
        assert!(st.to_string().contains("INCOMPLETE"), "{st}");
        assert_eq!(db.count().await.unwrap(), 11);

        // The same input fed to an `Import` in pieces of 7 bytes (a
        // line, the long one included, cut anywhere): the same summary,
        // bad lines and documents.
        let fed = Database::open(MemoryStore::new(), OpenOptions::default())
            .await
            .unwrap();
        let mut bad_fed = Vec::new();
        let mut im = Import::new(&opts, |e| {
            if let ImportEvent::BadLine { line, code, .. } = e {
                bad_fed.push((line, code));
            }
        });
        for piece in input.as_bytes().chunks(7) {
            im.push(&fed, piece).await.unwrap();
        }
        im.finish(&fed).await.unwrap();
        assert_eq!(im.summary(), &st);
        drop(im);
        assert_eq!(bad_fed, bad);
        for id in ["a/0", "a/9", "c/1"] {
            let (a, b) = (db.get(id).await.unwrap(), fed.get(id).await.unwrap());
            assert_eq!(a.map(|d| d.body), b.map(|d| d.body), "{id}");
        }
        assert_eq!(fed.count().await.unwrap(), 11);

        let strict = ImportOptions {
            strict: true,
            ..ImportOptions::default()
        };
        let (_, r) = import(&db, &b"{\"id\":\"d/1\"}\n[1]\n"[..], &strict, |_| {}).await;
        assert!(
            matches!(r, Err(ImportError::BadLine { line: 2, .. })),
            "{r:?}"
        );
    });
}

#[test]
fn import_line_errors() {
    let code = |l: &str| parse_import_line(l).unwrap_err().1;
    assert_eq!(code("{not json"), "invalid_json");
    assert_eq!(code("[1,2]"), "invalid_json");
    assert_eq!(code(r#"{"n":1}"#), "invalid_id");
    assert_eq!(code(r#"{"id":7}"#), "invalid_id");
    assert_eq!(code(r#"{"id":""}"#), "invalid_id");
    assert_eq!(code(r#"{"id":"a\u0001b"}"#), "invalid_id");
    assert_eq!(code(r#"{"id":"a","@metadata":3}"#), "invalid_json");
    assert_eq!(
        code(r#"{"id":"a","@metadata":{"@collection":""}}"#),
        "invalid_collection"
    );
}
