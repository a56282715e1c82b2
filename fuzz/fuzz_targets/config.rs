//! Fuzz target `config`: the hub configuration parsed from TOML text
//! (`outpost_hub::config::Config::parse`) never panics. Replayed on stable
//! by hub/tests/fuzz_config.rs.
#![no_main]

use std::path::Path;

/// A hub configuration with every table: the seed.
const SEED: &str = r#"listen = "127.0.0.1:4000"
data_dir = "./hub-data"
[tls]
cert = "hub.crt"
key = "/etc/hub.key"
[admin]
token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
[limits]
[[database]]
name = "main"
[database.conflicts]
"*" = "latest"
Payments = "manual"
[[edge]]
name = "laptop-7"
token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
database = "main"
read = ["patients/dr-7/"]
write = ["Patients/dr-7"]
[[upstream]]
database = "main"
url = "ws://127.0.0.1:4001/sync"
identity = "boston"
token = "s3cret"
"#;

libfuzzer_sys::fuzz_target!(
    init: {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/config");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("seed-0"), SEED);
    },
    |data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = outpost_hub::config::Config::parse(text, Path::new("/etc/outpost/hub.toml"));
    }
    }
);
