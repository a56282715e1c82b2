//! Fuzz target `page`: see `outpost::fuzzing::check_page`. Before fuzzing it
//! writes its seeds (real encodings) into `fuzz/corpus/page/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("page", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_page(data)
);
