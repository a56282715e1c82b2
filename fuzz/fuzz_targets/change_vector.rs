//! Fuzz target `change_vector`: see `outpost::fuzzing::check_change_vector`. Before fuzzing it
//! writes its seeds (real encodings) into `fuzz/corpus/change_vector/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("change_vector", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_change_vector(data)
);
