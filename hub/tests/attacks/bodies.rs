//! Class 6: bodies readers cannot read. Bodies are checked exactly as
//! readers parse them (`invalid_document`): nesting deeper than 64, invalid
//! UTF-8, lone surrogate escapes, numbers out of f64 range, duplicate keys
//! (CouchDB CVE-2017-12635), anything but an object.

use crate::common::*;

const ID: &str = "shared/notes/body";

/// Mallory pushes `body` (raw bytes) as `shared/notes/body`: refused with
/// `invalid_document`, nothing stored, the session goes on (a valid push
/// right after is acknowledged).
async fn refused(body: Vec<u8>) {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let d = RawDoc::new(ID.as_bytes(), b"Notes", &[(m.db_id, 1)], &body);
    let r = m.push_raw(&[d]).await;
    assert_refused(&r, "invalid_document", ID);
    let ok = doc(
        "shared/notes/fine",
        "Notes",
        live(&[(m.db_id, 2)], b"{\"ok\":1}"),
    );
    assert_acked(&m.push(vec![ok]).await);
    let v = hub.view().await;
    assert!(!v.contains_key(ID), "the bad body is not stored");
    assert!(v.contains_key("shared/notes/fine"));
    let export = hub.finish().await;
    assert!(!export.contains_key(ID));
}

fn nested(depth: usize, open: &str, close: &str) -> Vec<u8> {
    let mut s = String::from("{\"a\":");
    s.push_str(&open.repeat(depth));
    s.push('1');
    s.push_str(&close.repeat(depth));
    s.push('}');
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_nested_100000_deep() {
    refused(nested(100_000, "[", "]")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_nested_100000_deep() {
    refused(nested(100_000, "{\"a\":", "}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_nested_70_deep() {
    refused(nested(70, "[", "]")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_nested_70_deep() {
    refused(nested(70, "{\"a\":", "}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_string_value() {
    refused(b"{\"a\":\"\xff\xfe\"}".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_key() {
    refused(b"{\"\xc3\":1}".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_utf8_encoding_of_a_slash() {
    refused(b"{\"a\":\"\xc0\xaf\"}".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_encoded_surrogate_code_point() {
    refused(b"{\"a\":\"\xed\xa0\x80\"}".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_high_surrogate_escape() {
    refused(br#"{"a":"\ud800"}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_low_surrogate_escape() {
    refused(br#"{"a":"\udc00"}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversed_surrogate_pair_escape() {
    refused(br#"{"a":"\udc00\ud800"}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_surrogate_escape_followed_by_a_letter() {
    refused(br#"{"a":"\ud800\u0041"}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_surrogate_escape_in_a_key() {
    refused(br#"{"\ud83d":1}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_1e400_out_of_f64_range() {
    refused(br#"{"a":1e400}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_minus_1e400_out_of_f64_range() {
    refused(br#"{"a":-1e400}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_out_of_range_inside_an_array() {
    refused(br#"{"a":[1,2,3e999]}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_at_top_level() {
    refused(br#"{"roles":[],"roles":["_admin"]}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_in_a_nested_object() {
    refused(br#"{"a":{"b":1,"b":2}}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_spelled_with_an_escape() {
    refused(br#"{"a":1,"\u0061":2}"#.to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_array() {
    refused(b"[1,2,3]".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_string() {
    refused(b"\"just a string\"".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_null() {
    refused(b"null".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_bytes_after_the_object() {
    refused(b"{\"a\":1} {\"b\":2}".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_object() {
    refused(b"{\"a\":[1,2".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_body_for_a_live_version() {
    refused(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_control_character_inside_a_string() {
    refused(b"{\"a\":\"x\x00y\"}".to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_16_mib() {
    let mut b = b"{\"a\":\"".to_vec();
    b.resize(16 * 1024 * 1024 + 16, b'x');
    b.extend_from_slice(b"\"}");
    refused(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_carrying_a_body() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut d = RawDoc::new(ID.as_bytes(), b"Notes", &[(m.db_id, 1)], b"{\"hidden\":1}");
    d.versions[0].flags = 1;
    // Refused by the checks, or already by the frame decoder.
    let r = m.push_raw(&[d]).await;
    assert!(
        r.is_rejected("invalid_document") || r.is_error("protocol"),
        "{r:?}"
    );
    assert!(!hub.view().await.contains_key(ID));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_body_in_the_second_document_refuses_the_whole_batch() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let good = RawDoc::new(b"shared/notes/good", b"Notes", &[(m.db_id, 1)], b"{}");
    let bad = RawDoc::new(
        ID.as_bytes(),
        b"Notes",
        &[(m.db_id, 2)],
        br#"{"a":"\ud800"}"#,
    );
    assert_refused(&m.push_raw(&[good, bad]).await, "invalid_document", ID);
    let v = hub.view().await;
    assert!(!v.contains_key("shared/notes/good") && !v.contains_key(ID));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_body_in_a_conflict_version_of_a_document() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut d = RawDoc::new(ID.as_bytes(), b"Cards", &[(m.db_id, 1)], b"{}");
    let mut second = d.versions[0].clone();
    second.cv = vec![(hub_free_id(), 1)];
    second.body = br#"{"a":1e400}"#.to_vec();
    d.versions.push(second);
    let r = m.push_raw(&[d]).await;
    // The made-up db id may be caught first; either way nothing is stored.
    assert_refused_any(&r, &["invalid_document", "forged_change_vector"], ID);
    assert!(!hub.view().await.contains_key(ID));
    hub.finish().await;
}

fn hub_free_id() -> [u8; 16] {
    new_db_id().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_32_deep_and_escaped_pairs_are_accepted() {
    // The control case: what readers parse is accepted and delivered.
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut b = nested(32, "[", "]");
    b.truncate(b.len() - 1);
    b.extend_from_slice(br#","s":"\ud83d\ude00","n":1.5e300}"#);
    let d = RawDoc::new(ID.as_bytes(), b"Notes", &[(m.db_id, 1)], &b);
    assert_acked(&m.push_raw(&[d]).await);
    assert!(hub.view().await.contains_key(ID));
    let export = hub.finish().await;
    assert!(export.contains_key(ID));
}
