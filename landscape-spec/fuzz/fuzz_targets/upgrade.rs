//! Raw bytes -> parse; every model that reads upgrades idempotently, and the upgraded YAML reads
//! back as the same model (see `landscape_spec::testgen::check_upgrade`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| landscape_spec::testgen::check_upgrade(data));
