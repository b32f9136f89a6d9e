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

/// The fast reader decodes the services of `run` while it reads them (and drops their subtrees);
/// the result must be exactly what the reference path (saphyr, whole-tree decoding) gives.
#[test]
fn streaming_decode_gives_the_reference_result() {
    use landscape_spec::testgen::{check_same_as_reference, check_same_as_reference_with};
    let mut files: Vec<String> = common::corpus().into_iter().map(|(_, s)| s).collect();
    for n in [1, 10, 200] {
        files.push(landscape_spec::testgen::landscape_yaml(n));
    }
    let svc = "    steps:\n      - command: run x\n    plan: 8\n";
    let cases = [
        // duplicate service: the second is dropped and not decoded
        format!("schemaVersion: v0.4\nrun:\n  a:\n{svc}  a:\n    bogus: 1\n"),
        // errors inside streamed services, in several services
        "schemaVersion: v0.4\nrun:\n  a:\n    replicas: x\n    envv: 1\n  b:\n    network:\n      ports: [{port: 99999}]\n".to_string(),
        // v0.1 shape with services beside it: services are reported, not decoded
        format!("run:\n  steps:\n    - command: x\n  web:\n{svc}"),
        // no schemaVersion, services only: decoded, plus the shape error
        format!("run:\n  web:\n{svc}"),
        // schemaVersion written after run
        format!("run:\n  web:\n{svc}schemaVersion: v0.2\n"),
        // v0.4 with flat steps beside services
        format!("schemaVersion: v0.4\nrun:\n  steps:\n    - command: x\n  web:\n{svc}"),
        // non-mapping service values
        "schemaVersion: v0.4\nrun:\n  a: 1\n  b:\n    - x\n  c:\n  d: {steps: [{command: y}]}\n".to_string(),
        // run as a list, run as a flow mapping, run duplicated
        "schemaVersion: v0.4\nrun:\n  - a:\n      steps: []\n".to_string(),
        "schemaVersion: v0.4\nrun: {a: {steps: [{command: x}]}}\n".to_string(),
        format!("schemaVersion: v0.4\nrun:\n  a:\n{svc}run:\n  b:\n    bogus: 1\n"),
        format!("schemaVersion: v0.4\nrun:\n  a:\n{svc}run:\n  a:\n    bogus: 1\n  b:\n{svc}"),
        // keys named run below the top level are not streamed specially
        format!("schemaVersion: v0.4\nrun:\n  run:\n{svc}    env:\n      run: x\n"),
        // a service named like a reserved key, quoted keys
        format!("schemaVersion: v0.4\n\"run\":\n  'steps':\n{svc}"),
        // a fall back to saphyr after some services were streamed (anchor at the end)
        format!("schemaVersion: v0.4\nrun:\n  a:\n{svc}  b: &x\n    plan: 8\n  c: *x\n"),
        // an error the fast path leaves to saphyr, after streamed services
        format!("schemaVersion: v0.4\nrun:\n  a:\n{svc}  b:\n    steps: [\n"),
        // an unknown schemaVersion
        format!("schemaVersion: v9\nrun:\n  a:\n{svc}"),
    ];
    files.extend(cases);
    // Services are also checked while streaming when schemaVersion comes first: cases whose
    // checks depend on the version, on other services (route prefixes) or on the plans.
    let routes =
        "    network:\n      ports: [{port: 3000}]\n      paths: [{port: 3000, path: /api/}]\n";
    let checked = [
        format!("schemaVersion: v0.4\nrun:\n  a:\n{svc}{routes}  b:\n{svc}{routes}  c:\n{svc}{routes}"),
        "schemaVersion: v0.4\nrun:\n  db:\n    provider: {name: postgres, version: v1}\n    plan: {id: 0}\n".to_string(),
        "schemaVersion: v0.2\nrun:\n  db:\n    provider: {name: postgres, version: v1}\n    plan: {id: 0}\n".to_string(),
        "schemaVersion: v0.2\nrun:\n  a:\n    plan: 9\n    replicas: 5\n  b:\n    plan: 77\n  Bad_Name:\n    plan: 8\n".to_string(),
        format!("schemaVersion: v0.4\nprepare:\n  steps:\n    - command: ''\nrun:\n  a:\n{svc}    env:\n      API_TOKEN: literal\n"),
        format!("schemaVersion: 0.4\nrun:\n  a:\n{svc}"),
        format!("schemaVersion: v0.1\nrun:\n  a:\n{svc}"),
        format!("schemaVersion: v0.4\nschemaVersion: v0.2\nrun:\n  a:\n{svc}"),
        format!("schemaVersion: v0.4\nrun:\n  a:\n{svc}  b: 1\n  c:\n{svc}{routes}"),
        // schemaVersion between a `run` and its duplicate (fuzz finding)
        "run:\n  db:\n    provider: {name: pg}\n    plan: {id: x}\nschemaVersion: v0.4\nrun:\n  db:\n    plan: 8\n".to_string(),
    ];
    let plans = landscape_spec::PlanCatalogue::from_json(
        r#"[{"id": 8, "title": "Micro", "cpu": 0.5, "memory": 1073741824, "maxReplicas": 2}, {"id": 9, "title": "Old", "cpu": 1, "memory": 1, "deprecated": true}]"#,
    )
    .unwrap();
    let with_plans = landscape_spec::ParseOptions {
        plans: Some(plans),
        ..Default::default()
    };
    let skip = landscape_spec::ParseOptions {
        skip_validation: true,
        ..Default::default()
    };
    files.extend(checked);
    for f in &files {
        let parsed = landscape_spec::parse_str("fuzz.yml", f);
        check_same_as_reference(f.as_bytes(), &parsed);
        for opts in [&with_plans, &skip] {
            let parsed = landscape_spec::parse_with("fuzz.yml", f.as_bytes(), opts);
            check_same_as_reference_with(f.as_bytes(), &parsed, opts);
        }
    }
}
