//! Fuzz target `jsonl`: see `outpost::fuzzing::check_jsonl_line`. Before fuzzing it
//! writes its seeds (real encodings) into `fuzz/corpus/jsonl/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("jsonl", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_jsonl_line(data)
);
