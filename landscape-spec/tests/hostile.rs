//! Hostile input: each case returns (no panic, no stack overflow, bounded memory) and fails
//! cleanly with a located error, or (CRLF, BOM) works. Timings live in the benchmarks.

use landscape_spec::{parse_bytes, parse_str, Parsed};

fn only_error(p: &Parsed, code: &str) -> (u32, u32) {
    let e = p
        .errors()
        .next()
        .unwrap_or_else(|| panic!("expected an error {code}, got {:?}", p.diagnostics));
    assert_eq!(e.code, code, "{e:?}");
    assert!(
        e.span.start.line >= 1 && e.span.start.col >= 1,
        "error must be located: {e:?}"
    );
    (e.span.start.line, e.span.start.col)
}

#[test]
fn billion_laughs_is_stopped_by_the_alias_budget() {
    let mut s = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (i, c) in ('b'..='j').enumerate() {
        let prev = (b'a' + i as u8) as char;
        s.push_str(&format!(
            "{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    let p = parse_str("bomb.yml", &s);
    let (line, _) = only_error(&p, "limit-exceeded");
    assert!(line > 1, "the alias that crosses the budget is named");
    assert!(p
        .errors()
        .next()
        .unwrap()
        .message
        .contains("aliases expand"));
}

#[test]
fn deeply_nested_flow_sequences() {
    let s = "[".repeat(100_000);
    let p = parse_str("deep.yml", &s);
    let (line, col) = only_error(&p, "limit-exceeded");
    assert_eq!(line, 1);
    assert!((65..=1024).contains(&col), "stopped early, at column {col}");
}

#[test]
fn deeply_nested_block_sequences() {
    let s = "- ".repeat(100_000) + "x\n";
    let p = parse_str("deep.yml", &s);
    let (line, _) = only_error(&p, "limit-exceeded");
    assert_eq!(line, 1);
}

#[test]
fn nested_flow_mappings_500k() {
    let n = 500_000 / 4;
    let s = "{a: ".repeat(n) + "1" + &"}".repeat(n);
    let p = parse_str("flow.yml", &s);
    let (line, col) = only_error(&p, "limit-exceeded");
    assert_eq!(line, 1);
    assert!(
        (4 * 64..=4 * 1024).contains(&col),
        "stopped early, at column {col}"
    );
}

#[test]
fn ten_megabyte_scalar_is_refused() {
    let s = format!("run:\n  steps:\n    - command: {}\n", "x".repeat(10 << 20));
    let p = parse_str("big.yml", &s);
    let (line, col) = only_error(&p, "limit-exceeded");
    assert_eq!((line, col), (1, 1));
    // with a larger file limit, the scalar limit names the scalar's own position
    let opts = landscape_spec::ParseOptions {
        limits: landscape_spec::Limits {
            max_bytes: 64 << 20,
            ..Default::default()
        },
        ..Default::default()
    };
    let p = landscape_spec::parse_with("big.yml", s.as_bytes(), &opts);
    assert_eq!(only_error(&p, "limit-exceeded"), (3, 16));
}

#[test]
fn ten_thousand_duplicate_keys() {
    let s = "schemaVersion: v0.4\nrun:\n  web:\n".to_string() + &"    plan: 1\n".repeat(10_000);
    let p = parse_str("dup.yml", &s);
    let dups = p
        .diagnostics
        .iter()
        .filter(|d| d.code == "duplicate-key")
        .count();
    assert_eq!(dups, 9_999);
    let first = p
        .diagnostics
        .iter()
        .find(|d| d.code == "duplicate-key")
        .unwrap();
    assert_eq!((first.span.start.line, first.span.start.col), (5, 5));
    assert_eq!(first.related.as_ref().unwrap().span.start.line, 4);
}

#[test]
fn invalid_utf8_is_located() {
    let mut b = b"run:\n  steps:\n    - command: ab".to_vec();
    b.push(0xff);
    let p = parse_bytes("bad.yml", &b);
    assert_eq!(only_error(&p, "yaml-syntax"), (3, 18));
    assert!(p.errors().next().unwrap().message.contains("UTF-8"));
}

#[test]
fn nul_byte_is_located() {
    let p = parse_bytes("nul.yml", b"run:\n  st\0eps: []\n");
    assert_eq!(only_error(&p, "yaml-syntax"), (2, 5));
    assert!(p.errors().next().unwrap().message.contains("NUL"));
}

#[test]
fn bom_and_crlf_work() {
    let src = "\u{feff}schemaVersion: v0.4\r\nrun:\r\n  web:\r\n    steps:\r\n      - command: npm start\r\n    network:\r\n      ports: [{port: 3000}]\r\n      paths: [{port: 3000, path: /}]\r\n";
    let p = parse_str("crlf.yml", src);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let l = p.landscape.unwrap();
    assert_eq!(
        l.service("web").unwrap().steps()[0].command.value,
        "npm start"
    );
    // positions are still right with CRLF
    let p = parse_str(
        "crlf.yml",
        "schemaVersion: v0.4\r\nrun:\r\n  web:\r\n    replicas: 0\r\n",
    );
    assert_eq!(only_error(&p, "out-of-range"), (4, 15));
}

#[test]
fn fifty_megabytes_are_refused_by_the_default_limit() {
    let b = vec![b'#'; 50 << 20];
    let p = parse_bytes("huge.yml", &b);
    assert_eq!(only_error(&p, "limit-exceeded"), (1, 1));
    assert!(p
        .errors()
        .next()
        .unwrap()
        .message
        .contains("52428800 bytes"));
}

#[test]
fn multiple_documents_are_refused() {
    let p = parse_str("multi.yml", "run: {}\n---\nrun: {}\n");
    assert_eq!(only_error(&p, "yaml-syntax"), (2, 1));
}

#[test]
fn non_mapping_top_level() {
    for (src, _) in [("- a\n", 0), ("just text\n", 0), ("42\n", 0)] {
        let p = parse_str("top.yml", src);
        assert_eq!(only_error(&p, "wrong-type"), (1, 1));
        assert!(p.landscape.is_none());
    }
    // an empty file is an empty landscape (nothing to run), not a crash
    let p = parse_str("empty.yml", "");
    assert!(p.errors().next().is_some() || p.landscape.is_some());
}
