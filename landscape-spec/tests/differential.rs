//! The fast block-YAML path and the full saphyr-based reader must build the same tree
//! (structure, text, style, positions) wherever the fast path answers at all.

mod common;

use landscape_spec::yaml::{parse_document_fast, parse_document_full, Limits};

/// `Some(true)`: both agree; `Some(false)` never returned (panics with the difference);
/// `None`: the fast path declined.
fn check(src: &str) -> Option<()> {
    let limits = Limits::default();
    let mut df = Vec::new();
    let fast = parse_document_fast(src, &limits, &mut df)?;
    let mut ds = Vec::new();
    let full = parse_document_full(src, &limits, &mut ds).unwrap_or_else(|| {
        panic!("fast path accepted what the full reader rejects: {ds:?}\n---\n{src}")
    });
    if let Some(d) = fast.diff(&full) {
        panic!("fast and full trees differ: {d}\n---\n{src}");
    }
    let key = |d: &landscape_spec::Diagnostic| (d.code, d.span.start, d.message.clone());
    assert_eq!(
        df.iter().map(key).collect::<Vec<_>>(),
        ds.iter().map(key).collect::<Vec<_>>(),
        "diagnostics differ for\n{src}"
    );
    Some(())
}

#[test]
fn fast_path_reads_every_corpus_file_like_the_full_reader() {
    let mut declined = Vec::new();
    for (name, src) in common::corpus() {
        if std::env::var_os("DIFF_TRACE").is_some() {
            eprintln!("checking {name}");
        }
        if check(&src).is_none() {
            declined.push(name);
        }
    }
    assert!(
        declined.is_empty(),
        "the fast path declined corpus files: {declined:?}"
    );
}

#[test]
fn fast_path_reads_generated_landscapes() {
    for n in [1, 10, 200] {
        assert!(check(&landscape_spec::testgen::landscape_yaml(n)).is_some());
    }
}

#[test]
fn tricky_snippets_agree_or_fall_back() {
    let cases = [
        "a: b\nkey:   \"q x\"  # c\nlist:\n  - x\n  - k: v\n    k2: |\n      line1\n      line2\n\n  - >-\n    f1\n    f2\nnested:\n  m: 1\nplain: multi\n  line\n   more\nflow: [a, {b: c}]\nempty:\nlast: x",
        "a:\n- 1\n- 2\nb: 3\n",
        "a: 'it''s'\nb: \"esc \\\" \\n \\t \\u00e9 \\x41\"\n",
        "a: \"multi\n  line\n\n  para\"\n",
        "a: \"cont\\\n  inued\"\n",
        "a: 'multi\n  single'\n",
        "a: |+\n  keep\n\n\nb: |-\n  strip\n\n",
        "a: >\n  folded\n  text\n\n  para\n    spaced\n  back\n",
        "a: |2\n    two extra\n  base\n",
        "a: [1, 2,\n  3]\nb: {x: 1,\n  y: [a, b]}\n",
        "a: [ ]\nb: { }\nc: []\n",
        "a: b # comment\n# full line\n\n  # indented comment\nc: d\n",
        "dup: 1\ndup: 2\n",
        "url: http://x:80/a#frag\nk: a:b\n",
        "- a\n- b\n",
        "a:\n  -\n  - x\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "---\na: 1\n",
        "a: 1\n---\nb: 2\n",
        "a:\tb\n",
        "a: b: c\n",
        "é: ü\nclé: \"välue\" # ç\n",
        "a: 'x'\nb: \"\"\nc: ''\n",
        "a:\n  b:\n    c:\n      d: deep\n  e: 1\n",
        "k: v   \n  cont  \n",
        "a: -1\nb: -x\nc: :x\n",
        "list:\n  - name: a\n    command: b\n  - command: c\n",
        "a: |\n  x\n y\n",
        "a:\n  - |\n    block in seq\n  - >\n    folded in seq\n",
        "a: \"x\" junk\n",
        "a: [1, 2] junk\n",
        "\"quoted key\": 1\n'single key': 2\n",
        "a: {\"q\": 1, 'r': [x, \"y\"]}\n",
        "a: [\n  1,\n  2\n]\n",
        "a: b\r\nc:\r\n  - d\r\n",
        "a: x #not a comment start#\n",
        "a: \"\\q\"\n",
        "? complex\n: value\n",
        "a:\n    b: 1\n   c: 2\n",
        "a: 1\n  b: 2\n",
        "a: |\n\n  leading blank\n",
        "a: >-\n   more\n  less\n",
    ];
    let mut answered = 0;
    for c in cases {
        if check(c).is_some() {
            answered += 1;
        }
    }
    assert!(
        answered >= 25,
        "the fast path answered only {answered} of {} snippets",
        cases.len()
    );
}
