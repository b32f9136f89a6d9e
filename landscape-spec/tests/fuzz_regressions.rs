//! Every input the fuzzers ever found (kept under tests/fuzz_regressions/<target>/) stays fixed.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).expect("read regression input"),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn parse_regressions() {
    for (name, data) in inputs("parse") {
        eprintln!("parse: {name}");
        landscape_spec::testgen::check_parse(&data);
    }
}

#[test]
fn upgrade_regressions() {
    for (name, data) in inputs("upgrade") {
        eprintln!("upgrade: {name}");
        landscape_spec::testgen::check_upgrade(&data);
        landscape_spec::testgen::check_parse(&data);
    }
}

#[test]
fn corpus_and_generated_files_pass_the_fuzz_checks() {
    // The seeds the fuzzers start from must pass too.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/codesphere-ci");
    for e in std::fs::read_dir(dir).expect("corpus") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yml") {
            let data = std::fs::read(&p).unwrap();
            landscape_spec::testgen::check_parse(&data);
            landscape_spec::testgen::check_upgrade(&data);
        }
    }
    landscape_spec::testgen::check_parse(landscape_spec::testgen::landscape_yaml(20).as_bytes());
}
