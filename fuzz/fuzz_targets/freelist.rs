//! Fuzz target `freelist`: see `outpost::fuzzing::check_freelist`. Before fuzzing it
//! writes its seeds (real encodings) into `fuzz/corpus/freelist/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("freelist", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_freelist(data)
);
