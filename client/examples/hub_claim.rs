//! A native edge that claims one document with write safety `hub` (a
//! compare-and-set at the hub): the native racers of the mixed lottery
//! (`pkg-js/test/lottery.test.mjs`, where browser-code edges race them).
//!
//! ```sh
//! hub_claim --pubkey KEYFILE                     # makes the key if needed, prints p256:…
//! hub_claim URL IDENTITY KEYFILE ID BODY_JSON    # connects, prints {"state":"live"},
//!                                                # waits for a line on stdin, then claims ID
//!                                                # ("must not exist") and prints the outcome
//! ```
//!
//! The outcome line: `{"state":"done","code":"applied"|"conflict"|…,
//! "current": "<the hub's change vector>"}`, then, once this edge holds the
//! document the hub kept, `{"state":"converged","body":{…}}`.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use outpost::keys::{KeyPair, Signer};
use outpost::store::MemoryStore;
use outpost::sync::{EdgeConfig, SyncStatus};
use outpost::{Database, Expected, OpenOptions};
use outpost_client::{ClientOptions, HubOp, HubWriteError, spawn_edge};

fn fail(msg: &str) -> ! {
    eprintln!("hub_claim: {msg}");
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 2 && args[0] == "--pubkey" {
        let (key, _) = KeyPair::load_or_create(args[1].as_ref())
            .unwrap_or_else(|e| fail(&format!("key file {}: {e}", args[1])));
        println!("{}", key.public_key().to_text());
        return;
    }
    let [url, identity, key_file, id, body] = &args[..] else {
        fail("usage: hub_claim URL IDENTITY KEYFILE ID BODY_JSON | hub_claim --pubkey KEYFILE");
    };
    let body: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| fail(&format!("body: {e}")));
    let (key, _) = KeyPair::load_or_create(key_file.as_ref())
        .unwrap_or_else(|e| fail(&format!("key file {key_file}: {e}")));
    let db = Database::open(MemoryStore::new(), OpenOptions::default())
        .await
        .unwrap_or_else(|e| fail(&e.to_string()));
    let opts = ClientOptions {
        url: url.clone(),
        edge: EdgeConfig::with_key("main", identity, key.public_key().clone()),
        ca_cert: None,
        signer: Some(Arc::new(key)),
        client_cert: None,
    };
    let client = spawn_edge(db.clone(), opts, None);
    if !client
        .wait_for(Duration::from_secs(60), |s| matches!(s, SyncStatus::Live))
        .await
    {
        fail(&format!("never live: {:?}", client.status()));
    }
    println!("{}", serde_json::json!({ "state": "live" }));
    // The go signal.
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let op = HubOp::put(id.clone(), body, Expected::Missing);
    let r = client.write_at_hub(&[op], Duration::from_secs(60)).await;
    let (code, current) = match &r {
        Ok(_) => ("applied".to_string(), String::new()),
        Err(HubWriteError::Conflict { current, .. }) => ("conflict".into(), current.clone()),
        Err(e) => (e.code().to_string(), e.to_string()),
    };
    println!(
        "{}",
        serde_json::json!({ "state": "done", "code": code, "current": current })
    );
    for _ in 0..600 {
        if let Ok(Some(d)) = db.get(id).await {
            println!(
                "{}",
                serde_json::json!({ "state": "converged", "body": d.body, "changeVector": d.meta.change_vector.to_text() })
            );
            client.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fail("never received the document the hub kept");
}
