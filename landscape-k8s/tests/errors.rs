//! Bad input: one error per problem, each at its ci.yml position, all at once.

mod common;

use common::*;
use landscape_k8s::{Error, Options};
use landscape_spec::ParseOptions;

fn errors(src: &str, opts: &Options) -> Vec<(&'static str, u32, u32)> {
    // Read without the spec's own checks, as a host that builds models itself might.
    let p = landscape_spec::parse_str_with(
        "ci.yml",
        src,
        &ParseOptions {
            skip_validation: true,
            ..Default::default()
        },
    );
    match landscape_k8s::render(p.landscape.as_ref().unwrap(), opts) {
        Ok(r) => panic!("rendered: {}", r.to_yaml()),
        Err(Error::Invalid(d)) => {
            assert!(d.iter().all(|d| d.is_error() && d.help.is_some()));
            d.iter()
                .map(|d| (d.code, d.span.start.line, d.span.start.col))
                .collect()
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn unknown_plan_and_too_many_replicas() {
    let src = "schemaVersion: v0.4
run:
  web:
    plan: 99
    steps: [{command: ./web}]
  api:
    plan: 8
    replicas: 4
    steps: [{command: ./api}]
";
    assert_eq!(
        errors(src, &options()),
        [
            ("k8s-unknown-plan", 4, 11),
            ("k8s-too-many-replicas", 8, 15)
        ]
    );
}

#[test]
fn reactive_without_image() {
    let src = "schemaVersion: v0.4
prepare:
  steps:
    - command: make
run:
  web:
    steps: [{command: ./web}]
  cache:
    image: redis:7.2
";
    let opts = Options {
        image: None,
        ..options()
    };
    assert_eq!(
        errors(src, &opts),
        [("k8s-no-image", 4, 16), ("k8s-no-image", 6, 3)]
    );
    // A per-service image fixes the service, not the stage.
    let mut opts = Options {
        image: None,
        ..options()
    };
    opts.image_map.insert("web".into(), "registry/web:1".into());
    assert_eq!(errors(src, &opts), [("k8s-no-image", 4, 16)]);
}

#[test]
fn invalid_kubernetes_names() {
    let src = "schemaVersion: v0.4
run:
  Web_1:
    steps: [{command: ./web}]
  api:
    steps: [{command: ./api}]
    env:
      1BAD: x
      KEY: ${{ vault['my key'] }}
";
    assert_eq!(
        errors(src, &options()),
        [
            ("k8s-invalid-name", 3, 3),
            ("k8s-invalid-name", 8, 7),
            ("k8s-invalid-name", 9, 12)
        ]
    );
}

#[test]
fn colliding_names() {
    // The public port of `web` would be the HTTPRoute `web-3000`, which the service
    // `web-3000` already is; the second target host of `docs` would be the Service `docs-2`.
    let src = "schemaVersion: v0.4
run:
  web-3000:
    steps: [{command: ./a}]
    network:
      ports: [{port: 3000}]
      paths: [{port: 3000, path: /a}]
  web:
    steps: [{command: ./b}]
    network:
      ports: [{port: 3000, isPublic: true}]
  docs-2:
    steps: [{command: ./c}]
    network:
      ports: [{port: 8080}]
  docs:
    network:
      paths:
        - {path: /x, target: http://one.internal/}
        - {path: /y, target: http://two.internal/}
  api:
    steps: [{command: ./d}]
    env:
      LANDSCAPE_VAULT_K: x
      URL: a${{ vault.K }}
";
    let mut opts = options();
    opts.context.workspace_id = Some("ws".into());
    opts.context.dev_domain = Some("example.dev".into());
    let p = landscape_spec::parse_str_with("ci.yml", src, &ParseOptions::default());
    let d = match landscape_k8s::render(p.landscape.as_ref().unwrap(), &opts) {
        Err(Error::Invalid(d)) => d,
        other => panic!("{other:?}"),
    };
    let got: Vec<_> = d
        .iter()
        .map(|d| (d.code, d.span.start.line, d.span.start.col))
        .collect();
    assert_eq!(
        got,
        [
            ("k8s-name-collision", 11, 22),
            ("k8s-name-collision", 20, 30),
            ("k8s-name-collision", 25, 12)
        ]
    );
    // Each names the first claimant's place.
    assert_eq!(d[0].related.as_ref().unwrap().span.start.line, 7);
    assert_eq!(d[1].related.as_ref().unwrap().span.start.line, 12);
}

#[test]
fn bad_options_are_refused() {
    let l = parse(
        "ci.yml",
        "schemaVersion: v0.4\nrun:\n  web:\n    steps: [{command: x}]\n",
    );
    let e = landscape_k8s::render(
        &l,
        &Options {
            namespace: "Bad_NS".into(),
            ..options()
        },
    );
    assert!(matches!(e, Err(Error::Options(m)) if m.contains("Bad_NS")));
    let mut opts = options();
    opts.image_map.insert("nope".into(), "x:1".into());
    assert!(
        matches!(landscape_k8s::render(&l, &opts), Err(Error::Options(m)) if m.contains("\"nope\""))
    );
}
