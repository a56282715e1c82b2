//! Tests of the key-identity fields of the configuration.

use super::*;

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("/etc/outpost/hub.toml"))
}

fn key_text() -> String {
    let k = outpost::keys::KeyPair::generate().unwrap();
    outpost::keys::Signer::public_key(&k).to_text()
}

const DB: &str = "[[database]]\nname = \"main\"\n";

#[test]
fn key_edges_parse() {
    let k = key_text();
    let c = parse(&format!(
        "{DB}[[edge]]\nname = \"a\"\npubkey = \"{k}\"\ndatabase = \"main\"\n\
         [[edge]]\nname = \"b\"\nenroll_code_sha256 = \"{}\"\nenroll_expires = 100\nrevoked = true\ndatabase = \"main\"\n",
        token_sha256_hex("code")
    ))
    .unwrap();
    assert!(!c.dev_tokens);
    let a = c.edge("a").unwrap();
    assert_eq!(a.pubkey.as_ref().unwrap().to_text(), k);
    assert!(a.token_sha256.is_none() && a.enroll.is_none() && !a.revoked);
    let b = c.edge("b").unwrap();
    assert!(b.revoked && b.pubkey.is_none());
    let en = b.enroll.as_ref().unwrap();
    assert!(en.redeems("code", 100) && !en.redeems("code", 101) && !en.redeems("cod", 1));
}

#[test]
fn tokens_need_dev_mode_and_bad_keys_are_named() {
    let tok = format!(
        "[[edge]]\nname = \"t\"\ntoken_sha256 = \"{}\"\ndatabase = \"main\"\n",
        token_sha256_hex("x")
    );
    let e = parse(&format!("{DB}{tok}")).unwrap_err().to_string();
    assert!(
        e.contains("token_sha256")
            && e.contains("[dev] tokens = true")
            && e.contains("edge enroll t"),
        "{e}"
    );
    let c = parse(&format!("[dev]\ntokens = true\n{DB}{tok}")).unwrap();
    assert!(c.dev_tokens && c.authenticate("t", "x").is_some());
    let e = parse(&format!(
        "{DB}[[edge]]\nname = \"a\"\npubkey = \"p256:04zz\"\ndatabase = \"main\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("edge #1") && e.contains("pubkey"), "{e}");
    let e = parse(&format!(
        "{DB}[[edge]]\nname = \"a\"\nenroll_code_sha256 = \"{}\"\ndatabase = \"main\"\n",
        token_sha256_hex("c")
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("enroll_expires"), "{e}");
    let up =
        "[[upstream]]\ndatabase = \"main\"\nurl = \"ws://127.0.0.1:1/sync\"\nidentity = \"me\"\n";
    let e = parse(&format!("{DB}{up}token = \"t\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("token") && e.contains("[dev] tokens = true"),
        "{e}"
    );
    let e = parse(&format!("{DB}{up}")).unwrap_err().to_string();
    assert!(e.contains("key_file") && e.contains("keygen"), "{e}");
    let c = parse(&format!("{DB}{up}key_file = \"me.key\"\n")).unwrap();
    assert_eq!(
        c.upstreams[0].key_file.as_deref(),
        Some(Path::new("/etc/outpost/me.key"))
    );
}

#[test]
fn an_edge_may_have_its_own_budgets() {
    let k = key_text();
    let c = parse(&format!(
        "{DB}[limits]\npush_docs_per_second = 30\n\
         [[edge]]\nname = \"relay\"\npubkey = \"{k}\"\ndatabase = \"main\"\nrelay = true\n\
         [edge.limits]\npush_docs_per_second = 5000\npush_docs_burst = 50000\n\
         [[edge]]\nname = \"laptop\"\npubkey = \"{k}\"\ndatabase = \"main\"\n"
    ))
    .unwrap();
    let relay = c.limits_for("relay");
    assert_eq!(relay.push_docs_per_second, 5000);
    assert_eq!(relay.push_docs_burst, 50_000);
    assert_eq!(relay.push_bytes_per_second, c.limits.push_bytes_per_second);
    assert_eq!(c.limits_for("laptop"), c.limits);
    assert_eq!(c.limits_for("nobody"), c.limits);
    let bad = parse(&format!(
        "{DB}[[edge]]\nname = \"r\"\npubkey = \"{k}\"\ndatabase = \"main\"\n[edge.limits]\npush_docs_burst = 0\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(bad.contains("push_docs_burst"), "{bad}");
    let unknown = parse(&format!(
        "{DB}[[edge]]\nname = \"r\"\npubkey = \"{k}\"\ndatabase = \"main\"\n[edge.limits]\nmax_connections = 1\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("max_connections"), "{unknown}");
}
