//! Fuzz target `meta`: see `outpost::fuzzing::check_meta`. Before fuzzing it
//! writes its seeds (real encodings) into `fuzz/corpus/meta/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("meta", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_meta(data)
);
