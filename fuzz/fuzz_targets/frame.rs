//! Fuzz target `frame`: see `outpost::fuzzing::check_frame`. Before fuzzing it
//! writes its seeds (real encodings) into `fuzz/corpus/frame/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("frame", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_frame(data)
);
