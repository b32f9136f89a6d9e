//! Every real ci.yml of the corpus parses with zero errors; its warnings are pinned in a
//! snapshot (set `UPDATE_SNAPSHOTS=1` to rewrite it after an intended change).

mod common;

use landscape_spec::{emit, parse_str, upgrade};
use std::fmt::Write as _;

#[test]
fn corpus_has_no_errors_and_warnings_match_snapshot() {
    let files = common::corpus();
    assert!(
        files.len() >= 28,
        "expected the 28 corpus files, found {}",
        files.len()
    );
    let mut snap = String::new();
    let mut failures = Vec::new();
    for (name, src) in &files {
        let p = parse_str(name, src);
        if p.has_errors() || p.landscape.is_none() {
            failures.push(format!(
                "{name}:\n{}",
                landscape_spec::diag::render_human(name, src, &p.diagnostics)
            ));
        }
        let _ = writeln!(snap, "# {name}");
        for d in p.warnings() {
            let _ = writeln!(
                snap,
                "{}:{}: {} {}",
                d.span.start.line, d.span.start.col, d.code, d.message
            );
        }
    }
    assert!(
        failures.is_empty(),
        "corpus files with errors:\n{}",
        failures.join("\n")
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/corpus-warnings.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &snap).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).expect("snapshot missing: run with UPDATE_SNAPSHOTS=1");
    assert_eq!(
        snap, expected,
        "corpus warnings changed; review and rerun with UPDATE_SNAPSHOTS=1"
    );
}

#[test]
fn corpus_upgrades_cleanly_and_idempotently() {
    for (name, src) in common::corpus() {
        let l = parse_str(&name, &src).landscape.unwrap();
        let up = upgrade(&l);
        let yaml = emit::to_yaml(&up.landscape);
        let again = parse_str(&name, &yaml);
        assert!(
            !again.has_errors(),
            "{name}: upgraded output has errors:\n{yaml}\n{:?}",
            again.diagnostics
        );
        let reparsed = again.landscape.clone().unwrap();
        assert!(
            reparsed == up.landscape,
            "{name}: upgraded YAML does not read back as the same model: {}\n{yaml}",
            common::first_diff(&reparsed, &up.landscape)
        );
        assert!(reparsed.schema_version.value == landscape_spec::SchemaVersion::LATEST);
        assert!(
            !again
                .warnings()
                .any(|d| d.code == "legacy-network" || d.code == "deprecated"),
            "{name}: upgraded output still uses legacy forms"
        );
        let twice = upgrade(&up.landscape);
        assert!(
            twice.changes.is_empty(),
            "{name}: second upgrade changed {:?}",
            twice.changes
        );
        assert_eq!(twice.landscape, up.landscape);
    }
}

#[test]
fn corpus_round_trips_through_yaml_and_json() {
    for (name, src) in common::corpus() {
        let l = parse_str(&name, &src).landscape.unwrap();
        let yaml = emit::to_yaml(&l);
        let back = parse_str(&name, &yaml);
        assert_eq!(
            back.landscape.as_ref(),
            Some(&l),
            "{name}: YAML round trip differs:\n{yaml}"
        );
        let json = serde_json::to_string(&l).unwrap();
        let from_json: landscape_spec::Landscape = serde_json::from_str(&json).unwrap();
        assert_eq!(from_json, l, "{name}: JSON round trip differs:\n{json}");
    }
}
