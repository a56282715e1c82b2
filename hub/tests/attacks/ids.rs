//! Id normalisation tricks: case, Unicode forms (NFC/NFD, compatibility
//! characters), `..` and `.` segments, separators (backslash, full-width
//! and division solidus), control and invisible characters (zero-width
//! space and joiner, byte-order mark, right-to-left override), length.
//! Whatever the spelling, a write never lands outside the edge's write
//! prefixes, never changes a document of another scope, and a
//! non-canonical id is refused with `invalid_id`.

use crate::common::*;

/// Alice's documents every case guards.
const GUARDED: [&str; 3] = ["alice/x", "kiosk/x", "shared/x"];

/// A hub where alice wrote [`GUARDED`] (body `{"by":"alice"}`); mallory
/// (caught up) pushes `id` with body `{"by":"mallory"}`.
async fn attempt(id: &str) -> (Hub, Answer) {
    let hub = Hub::start();
    let mut a = hub.session("alice").await;
    for g in GUARDED {
        assert_acked(&Hub::honest_put(&mut a, g, "Notes", json!({"by": "alice"})).await);
    }
    a.close().await;
    let mut m = hub.mallory().await;
    let v = live(&[(m.db_id, 1)], &js(json!({"by": "mallory"})));
    let r = m.push(vec![doc(id, "Notes", v)]).await;
    (hub, r)
}

/// Alice's guarded documents are exactly as she wrote them.
async fn assert_guarded_intact(hub: &Hub) {
    let v = hub.view().await;
    for g in GUARDED {
        let d = v.get(g).unwrap_or_else(|| panic!("{g} is gone"));
        assert_eq!(d.versions.len(), 1, "{g}: {d:?}");
        assert_eq!(body(d), json!({"by": "alice"}), "{g} was changed");
    }
    for (id, d) in &v {
        if body(d) == json!({"by": "mallory"}) {
            let lower = id.to_lowercase();
            assert!(
                lower.starts_with("shared/") || lower.starts_with("mallory/"),
                "mallory's write landed at {id:?}"
            );
        }
    }
}

/// The push is refused with `code`, naming `id`.
async fn refused(id: &str, code: &str) {
    let (hub, r) = attempt(id).await;
    assert_refused(&r, code, id);
    assert_guarded_intact(&hub).await;
    hub.finish().await;
}

/// Refused (`invalid_id` or `write_denied`), or stored under exactly the
/// id sent inside mallory's own prefixes; alice's documents intact.
async fn contained(id: &str) {
    let (hub, r) = attempt(id).await;
    match &r {
        Answer::PushRejected { code, .. } => {
            assert!(code == "invalid_id" || code == "write_denied", "{r:?}")
        }
        Answer::PushAck { .. } => {
            let v = hub.view().await;
            assert!(v.contains_key(id), "stored under another id than {id:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_guarded_intact(&hub).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppercase_spelling_of_another_edges_prefix() {
    refused("ALICE/x", "write_denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_case_spelling_of_another_edges_document() {
    refused("Alice/X", "write_denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_segment_climbs_out_of_the_write_prefix() {
    refused("shared/../alice/x", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segment_inside_the_write_prefix() {
    refused("shared/./x", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_segment_double_slash() {
    refused("shared//x", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leading_slash() {
    refused("/shared/x", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_slash() {
    refused("shared/x/", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backslash_separators_climb_out_of_the_write_prefix() {
    refused("shared\\..\\alice\\x", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backslash_inside_the_write_prefix() {
    refused("shared/a\\x", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_character() {
    refused("shared/x\0", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bell_control_character() {
    refused("shared/\u{7}x", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newline_splitting_two_ids() {
    refused("shared/x\nalice/x", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_control_character() {
    refused("shared/x\u{7f}", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_next_line_control_character() {
    refused("shared/x\u{85}", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_id() {
    refused("", "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_of_513_bytes() {
    refused(&format!("shared/{}", "x".repeat(506)), "invalid_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_of_512_bytes_is_accepted() {
    // The control case: the longest valid id.
    let id = format!("shared/{}", "x".repeat(505));
    let (hub, r) = attempt(&id).await;
    assert_acked(&r);
    assert!(hub.view().await.contains_key(&id));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_width_solidus_instead_of_slashes() {
    contained("shared\u{ff0f}..\u{ff0f}alice\u{ff0f}x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_width_solidus_after_a_real_prefix() {
    contained("shared/..\u{ff0f}alice\u{ff0f}x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn division_slash_as_a_separator() {
    contained("alice\u{2215}x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_width_letters_spelling_another_prefix() {
    contained("\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}/x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_width_space_inside_another_edges_prefix() {
    contained("alice\u{200b}/x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_width_joiner_after_an_existing_id() {
    contained("shared/x\u{200d}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_order_mark_before_another_edges_prefix() {
    contained("\u{feff}alice/x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_to_left_override_spelling_alice_backwards() {
    contained("shared/\u{202e}x/ecila").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kelvin_sign_lowercasing_into_another_edges_prefix() {
    // U+212A KELVIN SIGN lowercases to `k`: `Kiosk/x` → `kiosk/x`.
    contained("\u{212a}iosk/x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotted_capital_i_spelling_another_edges_prefix() {
    contained("AL\u{130}CE/x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_dot_dot() {
    contained("shared/%2e%2e/alice/x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decomposed_form_of_a_write_only_id_someone_else_created() {
    // Alice created `drop/café` (NFC); mallory, write-only on drop/, pushes
    // the NFD spelling: it may be a new document or the same one, but
    // alice's document never changes.
    let nfc = "drop/caf\u{e9}";
    let nfd = "drop/cafe\u{301}";
    let hub = Hub::start();
    hub.alice_writes(nfc, "Notes", json!({"by": "alice"})).await;
    let mut m = hub.mallory().await;
    let v = live(
        &[(m.hub_db_id(), m.hub_last_etag()), (m.db_id, 1)],
        &js(json!({"by": "mallory"})),
    );
    let r = m.push(vec![doc(nfd, "Notes", v)]).await;
    assert!(
        matches!(r, Answer::PushAck { .. }) || r.code().is_some(),
        "{r:?}"
    );
    assert_unchanged(&hub, nfc, "Notes", json!({"by": "alice"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_variant_of_a_write_only_id_someone_else_created() {
    let hub = Hub::start();
    hub.alice_writes("drop/secret", "Notes", json!({"by": "alice"}))
        .await;
    let mut m = hub.mallory().await;
    let v = live(
        &[(m.hub_db_id(), m.hub_last_etag()), (m.db_id, 1)],
        &js(json!({"by": "mallory"})),
    );
    let r = m.push(vec![doc("DROP/Secret", "Notes", v)]).await;
    assert_refused_or_create_ack(&r, "forged_change_vector", "DROP/Secret");
    assert_unchanged(&hub, "drop/secret", "Notes", json!({"by": "alice"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_id_bytes() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let d = RawDoc::new(b"shared/\xff\xfe", b"Notes", &[(m.db_id, 1)], b"{}");
    let r = m.push_raw(&[d]).await;
    assert!(
        r.is_error("protocol") || r.is_rejected("invalid_id"),
        "{r:?}"
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_case_spellings_of_one_id_in_one_batch() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let a = doc("shared/dup", "Notes", live(&[(m.db_id, 1)], b"{\"n\":1}"));
    let b = doc("SHARED/Dup", "Notes", live(&[(m.db_id, 2)], b"{\"n\":2}"));
    let r = m.push(vec![a, b]).await;
    assert_refused(&r, "duplicate_id", "SHARED/Dup");
    assert!(
        !hub.view()
            .await
            .keys()
            .any(|k| k.eq_ignore_ascii_case("shared/dup"))
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_as_an_id() {
    contained("*").await;
}
