//! Helpers shared by the integration tests.
#![allow(dead_code)]

use landscape_spec::{parse_str, Diagnostic, Parsed};
use std::path::PathBuf;

/// The corpus of real ci.yml files, beside the repository (`../shared`).
pub fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/codesphere-ci");
    assert!(
        dir.is_dir(),
        "the corpus is missing at {} (CI clones the repository next to ../shared)",
        dir.display()
    );
    dir
}

/// Every corpus file: (file name, text), sorted by name.
pub fn corpus() -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("read corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read corpus file"))
        })
        .collect();
    files.sort();
    files
}

/// Parses and returns the diagnostics with a given code.
pub fn with_code<'p>(p: &'p Parsed, code: &str) -> Vec<&'p Diagnostic> {
    p.diagnostics.iter().filter(|d| d.code == code).collect()
}

/// Asserts that `src` yields a diagnostic `code` at `line:col` and returns it.
#[track_caller]
pub fn expect_at(src: &str, code: &str, line: u32, col: u32) -> Diagnostic {
    let p = parse_str("t.yml", src);
    let found: Vec<_> = p.diagnostics.iter().filter(|d| d.code == code).collect();
    let hit = found
        .iter()
        .find(|d| d.span.start.line == line && d.span.start.col == col);
    match hit {
        Some(d) => (*d).clone(),
        None => panic!(
            "expected {code} at {line}:{col}; got:\n{}",
            p.diagnostics
                .iter()
                .map(|d| format!(
                    "  {} {}:{} {}",
                    d.code, d.span.start.line, d.span.start.col, d.message
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// The first line where two values' JSON forms differ (for readable assertion messages).
pub fn first_diff<T: serde::Serialize>(a: &T, b: &T) -> String {
    let a = serde_json::to_string_pretty(a).unwrap();
    let b = serde_json::to_string_pretty(b).unwrap();
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {i}: {x:?} vs {y:?}");
        }
    }
    "no difference in JSON form (spans or written keys only)".into()
}
