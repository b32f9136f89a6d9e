//! End-to-end tests of `landscape validate`, `upgrade` and `schema` (the built example binary).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn landscape_bin() -> PathBuf {
    // target/<profile>/deps/cli_validate-<hash> -> target/<profile>/examples/landscape
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples/landscape");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo test` builds the examples first (run `cargo build --examples`)",
        bin.display()
    );
    bin
}

fn run(args: &[&str]) -> Output {
    Command::new(landscape_bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run landscape")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn validate_sample_is_clean() {
    for file in ["examples/sample/ci.yml", "examples/showcase/ci.yml"] {
        let o = run(&["validate", file]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stdout(&o));
        assert!(
            stdout(&o).contains("ok: 1 file checked, 0 errors"),
            "{file}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn validate_broken_reports_every_problem_with_positions() {
    let o = run(&["validate", "examples/sample/broken.yml"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for needle in [
        "error[invalid-service-name]",
        "--> examples/sample/broken.yml:3:3",
        "error[out-of-range]",
        "--> examples/sample/broken.yml:4:15",
        "error[wrong-type]",
        "error[unknown-key]",
        "did you mean \"healthEndpoint\"",
        "error[duplicate-port]",
        "error[invalid-path]",
        "warning[literal-secret]",
        "^^^",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn validate_json_format_is_one_array() {
    let o = run(&[
        "validate",
        "--format",
        "json",
        "examples/sample/broken.yml",
        "examples/sample/ci.yml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let arr = v.as_array().expect("array");
    assert!(arr.len() >= 6);
    let first = &arr[0];
    for key in [
        "file",
        "line",
        "column",
        "endLine",
        "endColumn",
        "severity",
        "code",
        "message",
        "help",
    ] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
    assert_eq!(first["file"], "examples/sample/broken.yml");
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(3), Some(3))
    );
}

#[test]
fn validate_github_format() {
    let o = run(&[
        "validate",
        "--format",
        "github",
        "examples/sample/broken.yml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("::error file=examples/sample/broken.yml,line=4,col=15,")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("::warning file=")),
        "{out}"
    );
}

#[test]
fn validate_missing_file_is_a_usage_error() {
    let o = run(&["validate", "does/not/exist.yml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("cannot read does/not/exist.yml"), "{err}");
    assert_eq!(run(&["validate"]).status.code(), Some(2));
}

#[test]
fn validate_with_plan_catalogue() {
    let dir = std::env::temp_dir().join(format!("landscape-cli-plans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plans = dir.join("plans.json");
    std::fs::write(
        &plans,
        r#"[{"id": 8, "title": "Micro", "cpu": 0.5, "memory": 1073741824, "maxReplicas": 1}]"#,
    )
    .unwrap();
    let o = run(&[
        "validate",
        "--plans",
        plans.to_str().unwrap(),
        "examples/showcase/ci.yml",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("error[too-many-replicas]"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn upgrade_prints_v04_yaml_and_notes() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/codesphere-ci/codesphere-cloud__ci2dockerfile__ci.single.yml");
    let o = run(&["upgrade", corpus.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let yaml = stdout(&o);
    assert!(yaml.starts_with("schemaVersion: v0.4\n"), "{yaml}");
    assert!(
        !yaml.contains("\n      path: /"),
        "legacy form left:\n{yaml}"
    );
    let notes = String::from_utf8_lossy(&o.stderr);
    assert!(notes.contains("network.path -> ports + paths"), "{notes}");
    // the output validates without legacy warnings
    let parsed = landscape::spec::parse_str("up.yml", &yaml);
    assert!(!parsed.has_errors());
    assert!(!parsed
        .diagnostics
        .iter()
        .any(|d| d.code == "legacy-network"));
}

#[test]
fn schema_is_draft07_json() {
    let o = run(&["schema"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
}
