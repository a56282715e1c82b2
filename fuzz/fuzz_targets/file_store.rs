//! Fuzz target `file_store`: see `outpost::fuzzing::check_file_store`. Before fuzzing it
//! writes its seeds (real encodings) into `fuzz/corpus/file_store/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("file_store", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_file_store(data)
);
