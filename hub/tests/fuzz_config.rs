//! Replays the inputs kept for the `config` fuzz target
//! (`fuzz/fuzz_targets/config.rs`): every file under
//! `crate/tests/fuzz-regressions/config/` is parsed as a hub configuration,
//! which must return (a configuration or a typed error), never panic.

use std::path::Path;

use outpost_hub::config::Config;

#[test]
fn config_regression_inputs_parse_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crate/tests/fuzz-regressions/config");
    let mut ran = 0;
    for e in std::fs::read_dir(&dir).expect("the config regression directory") {
        let path = e.expect("a directory entry").path();
        let data = std::fs::read(&path).expect("read an input");
        if let Ok(text) = std::str::from_utf8(&data) {
            eprintln!("{}", path.display());
            let _ = Config::parse(text, Path::new("/etc/outpost/hub.toml"));
        }
        ran += 1;
    }
    assert!(ran > 0, "no input in {}", dir.display());
}
