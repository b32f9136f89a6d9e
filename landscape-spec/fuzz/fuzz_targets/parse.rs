//! Raw bytes -> parse + validate. Never panics; wherever the fast YAML path answers, the full
//! reader must build the same tree (see `landscape_spec::testgen::check_parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| landscape_spec::testgen::check_parse(data));
