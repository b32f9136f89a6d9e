//! Generated landscapes for benchmarks and fuzzing (not part of the stable API).

use std::fmt::Write as _;

/// A v0.4 landscape with `n` services, each with env (including templates), ports, paths,
/// three steps and volume mounts. About 660 bytes per service (the 200-service file is 131 KB).
pub fn landscape_yaml(n: usize) -> String {
    let mut s = String::with_capacity(n * 400 + 200);
    s.push_str("schemaVersion: v0.4\nprepare:\n  steps:\n    - name: Install\n      command: npm ci\ntest:\n  steps: []\nrun:\n");
    for i in 0..n {
        let _ = write!(
            s,
            "  svc-{i}:
    plan: 8
    replicas: 2
    healthEndpoint: http://localhost:{port}/health
    steps:
      - name: migrate
        command: ./migrate --service {i}
      - command: npm run build:{i}
      - command: node server.js --port {port}
    env:
      NODE_ENV: production
      DB_PASSWORD: ${{{{ vault.db_{i} }}}}
      PUBLIC_URL: https://${{{{ workspace.devDomain }}}}/s{i}
      WORKERS: {w}
    network:
      ports:
        - port: {port}
          isPublic: false
      paths:
        - port: {port}
          path: /s{i}
          stripPath: true
    volumeMounts:
      - name: _workspace
        mountPath: /home/user/app
        workspacePath: services/s{i}
",
            port = 3000 + (i % 60000),
            w = i % 8 + 1
        );
    }
    s
}

/// The checks of the `parse` fuzz target: no panic, every diagnostic located, the result equal
/// to the reference path's (saphyr reader, whole-tree decoding), and wherever the fast YAML path
/// answers, the full reader builds the same tree. Panics on a violation.
pub fn check_parse(data: &[u8]) {
    use crate::yaml::{check_bytes, parse_document_fast, parse_document_full, Limits};
    let parsed = crate::parse_bytes("fuzz.yml", data);
    for d in &parsed.diagnostics {
        assert!(
            d.span.start.line >= 1 && d.span.start.col >= 1,
            "unlocated diagnostic {d:?}"
        );
    }
    check_same_as_reference(data, &parsed);
    if let Ok(text) = std::str::from_utf8(data) {
        // Text skips the UTF-8 check; everything else must be the same.
        let from_text = crate::parse_str("fuzz.yml", text);
        assert!(
            from_text.landscape == parsed.landscape,
            "parse_str and parse_bytes give different models"
        );
        assert_eq!(
            format!("{:?}", from_text.diagnostics),
            format!("{:?}", parsed.diagnostics),
            "parse_str and parse_bytes give different diagnostics"
        );
    }
    let limits = Limits::default();
    let mut diags = Vec::new();
    let Ok(text) = check_bytes(data, &limits, &mut diags) else {
        return;
    };
    let mut fd = Vec::new();
    if let Some(fast) = parse_document_fast(text, &limits, &mut fd) {
        let mut sd = Vec::new();
        let full = parse_document_full(text, &limits, &mut sd)
            .unwrap_or_else(|| panic!("fast path accepted what the full reader rejects: {sd:?}"));
        if let Some(d) = fast.diff(&full) {
            panic!("fast and full trees differ: {d}");
        }
        let key = |d: &crate::Diagnostic| (d.code, d.span.start);
        assert_eq!(
            fd.iter().map(key).collect::<Vec<_>>(),
            sd.iter().map(key).collect::<Vec<_>>()
        );
    }
}

/// Panics unless `parsed` (from [`crate::parse_bytes`]) equals what the reference path gives:
/// same model, same diagnostics in the same order (compared by code, severity, start, related
/// start, message and help: where a collection's span ends differs between the readers).
pub fn check_same_as_reference(data: &[u8], parsed: &crate::Parsed) {
    check_same_as_reference_with(data, parsed, &Default::default());
}

/// [`check_same_as_reference`] for a file read with `opts`.
pub fn check_same_as_reference_with(
    data: &[u8],
    parsed: &crate::Parsed,
    opts: &crate::ParseOptions,
) {
    let key = |d: &crate::Diagnostic| {
        (
            d.code,
            d.severity,
            d.span.start,
            d.related
                .as_ref()
                .map(|r| (r.span.start, r.message.clone())),
            d.message.clone(),
            d.help.clone(),
        )
    };
    let reference = crate::parse_reference("fuzz.yml", data, opts);
    assert!(
        parsed.landscape == reference.landscape,
        "the fast reader's model differs from the reference:\n{:?}\n---\n{:?}",
        parsed.landscape,
        reference.landscape
    );
    assert_eq!(
        parsed.diagnostics.iter().map(key).collect::<Vec<_>>(),
        reference.diagnostics.iter().map(key).collect::<Vec<_>>(),
        "the fast reader's diagnostics differ from the reference"
    );
}

/// The checks of the `upgrade` fuzz target: every model that reads upgrades idempotently and
/// its upgraded YAML reads back as the same model. Panics on a violation.
pub fn check_upgrade(data: &[u8]) {
    let parsed = crate::parse_bytes("fuzz.yml", data);
    let Some(l) = parsed.landscape else { return };
    let once = crate::upgrade(&l);
    let twice = crate::upgrade(&once.landscape);
    assert!(
        twice.changes.is_empty(),
        "second upgrade changed {:?}",
        twice.changes
    );
    assert!(
        twice.landscape == once.landscape,
        "second upgrade changed the model"
    );
    check_roundtrip(&once.landscape);
}

/// Model -> YAML -> model must be the identity. Panics on a violation.
pub fn check_roundtrip(l: &crate::Landscape) {
    let yaml = crate::emit::to_yaml(l);
    let p = crate::parse_str("rt.yml", &yaml);
    let back = p
        .landscape
        .unwrap_or_else(|| panic!("emitted YAML does not read: {:?}\n{yaml}", p.diagnostics));
    assert!(back == *l, "round trip differs:\n{yaml}");
}
