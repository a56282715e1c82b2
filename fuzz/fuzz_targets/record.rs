//! Fuzz target `record`: see `outpost::fuzzing::check_record`. Before fuzzing it
//! writes its seeds (real encodings) into `fuzz/corpus/record/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("record", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_record(data)
);
