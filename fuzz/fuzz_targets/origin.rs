//! Fuzz target `origin`: see `outpost::fuzzing::check_origin`. Before fuzzing it
//! writes its seeds (real encodings) into `fuzz/corpus/origin/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("origin", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_origin(data)
);
