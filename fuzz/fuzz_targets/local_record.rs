//! Fuzz target `local_record`: see `outpost::fuzzing::check_local_record`
//! (the hub's served records of purge orders, the deletion guards). Before
//! fuzzing it writes its seeds (real encodings) into
//! `fuzz/corpus/local_record/`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: outpost::fuzzing::write_seeds("local_record", env!("CARGO_MANIFEST_DIR")),
    |data: &[u8]| outpost::fuzzing::check_local_record(data)
);
