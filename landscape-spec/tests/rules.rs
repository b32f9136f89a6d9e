//! One failing input per rule, with the exact line and column asserted.

mod common;

use common::expect_at;
use landscape_spec::{parse_str, parse_with, ParseOptions, PlanCatalogue, Severity};

fn svc(body: &str) -> String {
    // Service body starts at line 4, indented by 4.
    format!("schemaVersion: v0.4\nrun:\n  web:\n{body}")
}

const ROUTED: &str =
    "    network:\n      ports: [{port: 3000}]\n      paths: [{port: 3000, path: /}]\n";

#[test]
fn yaml_syntax_error_is_located() {
    let d = expect_at("run:\n  web: [1, 2\n", "yaml-syntax", 3, 1);
    assert!(d.message.contains("invalid YAML"), "{d:?}");
}

#[test]
fn duplicate_keys_point_at_second_and_first() {
    let d = expect_at(
        "schemaVersion: v0.4\nrun:\n  web:\n    plan: 1\n    plan: 2\n",
        "duplicate-key",
        5,
        5,
    );
    let r = d.related.expect("related span");
    assert_eq!((r.span.start.line, r.span.start.col), (4, 5));
    assert_eq!(r.message, "first defined here");
}

#[test]
fn wrong_types() {
    let d = expect_at(&svc("    replicas: two\n"), "wrong-type", 4, 15);
    assert!(d.message.contains("integer"), "{d:?}");
    expect_at(&svc("    env: [a, b]\n"), "wrong-type", 4, 10);
    expect_at(
        &svc("    network:\n      ports: 3000\n"),
        "wrong-type",
        5,
        14,
    );
    let d = expect_at(&svc("    plan: \"8\"\n"), "wrong-type", 4, 11);
    assert!(d.message.contains("plan"), "{d:?}");
    expect_at(&svc("    env:\n      A: {x: 1}\n"), "wrong-type", 5, 10);
}

#[test]
fn bools_accept_only_true_and_false() {
    let d = expect_at(&svc("    isPublic: yes\n"), "wrong-type", 4, 15);
    assert!(d.help.as_deref().unwrap().contains("`true`"), "{d:?}");
    let d = expect_at(
        &svc("    network:\n      ports:\n        - port: 3000\n          isPublic: off\n"),
        "wrong-type",
        7,
        21,
    );
    assert!(d.help.as_deref().unwrap().contains("`false`"), "{d:?}");
    expect_at(&svc("    isPublic: \"true\"\n"), "wrong-type", 4, 15);
    expect_at(&svc("    isPublic: True\n"), "wrong-type", 4, 15);
}

#[test]
fn unknown_keys_suggest_and_list() {
    let d = expect_at(
        &svc("    healthEndpont: http://localhost:3000/\n"),
        "unknown-key",
        4,
        5,
    );
    let help = d.help.unwrap();
    assert!(help.contains("did you mean \"healthEndpoint\""), "{help}");
    assert!(help.contains("expected one of: steps, image"), "{help}");
    let d = expect_at(
        "schemaVersion: v0.4\nprepar:\n  steps: []\n",
        "unknown-key",
        2,
        1,
    );
    assert!(d.help.unwrap().contains("\"prepare\""));
    expect_at(&svc("    network:\n      paths:\n        - path: /\n          port: 3000\n          strip: true\n"), "unknown-key", 8, 11);
}

#[test]
fn unknown_schema_version() {
    let d = expect_at(
        "schemaVersion: v0.9\nrun: {}\n",
        "unknown-schema-version",
        1,
        16,
    );
    assert!(d.help.unwrap().contains("v0.2, v0.3, v0.4"));
}

#[test]
fn v01_and_v02_shapes_mixed() {
    // services without a schemaVersion
    expect_at(
        "run:\n  web:\n    steps: []\n",
        "schema-shape-mismatch",
        2,
        3,
    );
    // flat steps with a schemaVersion
    expect_at(
        "schemaVersion: v0.2\nrun:\n  steps:\n    - command: x\n",
        "schema-shape-mismatch",
        3,
        3,
    );
    // both at once in a v0.1 file
    expect_at(
        "run:\n  steps:\n    - command: x\n  api:\n    steps: []\n",
        "schema-shape-mismatch",
        4,
        3,
    );
}

#[test]
fn step_without_command() {
    let d = expect_at(
        "prepare:\n  steps:\n    - name: build\nrun:\n  steps: []\n",
        "missing-key",
        3,
        7,
    );
    assert!(d.message.contains("no `command`"));
}

#[test]
fn service_name_must_be_a_dns_label() {
    expect_at(
        "schemaVersion: v0.4\nrun:\n  Web_1:\n    steps: []\n",
        "invalid-service-name",
        3,
        3,
    );
    expect_at(
        "schemaVersion: v0.4\nrun:\n  web-:\n    steps: []\n",
        "invalid-service-name",
        3,
        3,
    );
}

#[test]
fn ports_out_of_range() {
    expect_at(
        &svc("    network:\n      ports:\n        - port: 70000\n"),
        "out-of-range",
        6,
        17,
    );
    expect_at(
        &svc("    network:\n      ports:\n        - port: 0\n"),
        "out-of-range",
        6,
        17,
    );
    expect_at(
        &svc("    network:\n      paths:\n        - port: -1\n          path: /\n"),
        "out-of-range",
        6,
        17,
    );
}

#[test]
fn replicas_below_one() {
    expect_at(&svc("    replicas: 0\n"), "out-of-range", 4, 15);
}

#[test]
fn steps_and_command_on_a_container() {
    let d = expect_at(
        &svc("    image: nginx:1.27\n    command: [nginx]\n    steps:\n      - command: x\n"),
        "conflicting-fields",
        5,
        14,
    );
    assert!(d.message.contains("both `steps` and `command`"));
}

#[test]
fn image_and_base_image() {
    let d = expect_at(
        &svc("    image: nginx:1.27\n    baseImage: nginx:1.26\n"),
        "conflicting-fields",
        5,
        16,
    );
    assert_eq!(d.related.unwrap().span.start.line, 4);
}

#[test]
fn path_must_start_with_slash() {
    expect_at(&svc("    network:\n      ports: [{port: 3000}]\n      paths:\n        - port: 3000\n          path: api\n"), "invalid-path", 8, 17);
    expect_at(
        &svc("    network:\n      path: api\n"),
        "invalid-path",
        5,
        13,
    );
}

#[test]
fn two_services_claiming_one_route() {
    let src = "schemaVersion: v0.4\nrun:\n  a:\n    network:\n      ports: [{port: 3000}]\n      paths: [{port: 3000, path: /api}]\n  b:\n    network:\n      ports: [{port: 3000}]\n      paths: [{port: 3000, path: /api/}]\n";
    let d = expect_at(src, "duplicate-route", 10, 34);
    assert_eq!(d.related.unwrap().span.start.line, 6);
    // two paths of one service
    let src = svc("    network:\n      ports: [{port: 3000}]\n      paths:\n        - {port: 3000, path: /x}\n        - {port: 3000, path: /x}\n");
    expect_at(&src, "duplicate-route", 8, 30);
}

#[test]
fn port_listed_twice() {
    let d = expect_at(
        &svc("    network:\n      ports:\n        - port: 3000\n        - port: 3000\n"),
        "duplicate-port",
        7,
        17,
    );
    assert_eq!(d.related.unwrap().span.start.line, 6);
}

#[test]
fn legacy_path_mixed_with_paths() {
    expect_at(&svc("    network:\n      path: /\n      paths: [{port: 3000, path: /x}]\n      ports: [{port: 3000}]\n"), "conflicting-fields", 5, 13);
}

#[test]
fn path_port_missing_outside_headless_route() {
    expect_at(
        &svc("    steps: []\n    network:\n      paths:\n        - path: /api\n"),
        "missing-route-port",
        7,
        17,
    );
    // headless route: no port is fine
    let p = parse_str(
        "t",
        &svc(
            "    network:\n      paths:\n        - path: /\n          target: http://example.com\n",
        ),
    );
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
}

#[test]
fn volume_mount_rules() {
    let base = |m: &str| svc(&format!("    volumeMounts:\n      - {m}\n"));
    expect_at(
        &base("{name: data, mountPath: /x}"),
        "invalid-volume-mount",
        5,
        16,
    );
    expect_at(
        &base("{name: _workspace, mountPath: x}"),
        "invalid-volume-mount",
        5,
        39,
    );
    expect_at(
        &base("{name: _workspace, mountPath: /x, workspacePath: /etc}"),
        "invalid-volume-mount",
        5,
        58,
    );
    expect_at(
        &base("{name: _workspace, mountPath: /x, workspacePath: a/../../b}"),
        "invalid-volume-mount",
        5,
        58,
    );
    expect_at(
        &svc("    mountSubPath: ../up\n"),
        "invalid-volume-mount",
        4,
        19,
    );
}

#[test]
fn malformed_templates() {
    let d = expect_at(
        &svc("    env:\n      A: x ${{ secrets.B }}\n"),
        "invalid-template",
        5,
        16,
    );
    assert!(d
        .help
        .unwrap()
        .contains("expected one of vault, workspace, team"));
    expect_at(
        &svc("    env:\n      A: \"${{ vault.B\"\n"),
        "invalid-template",
        5,
        11,
    );
    expect_at(
        "schemaVersion: v0.4\nrun:\n  db:\n    provider: {name: pg}\n    plan: {id: 0}\n    secrets:\n      p: ${{ vault. }}\n",
        "invalid-template",
        7,
        20,
    );
    expect_at(&svc("    network:\n      paths:\n        - path: /\n          target: http://${{ team.name }}\n"), "invalid-template", 7, 35);
}

#[test]
fn managed_service_needs_provider_name_and_plan_id() {
    expect_at(
        "schemaVersion: v0.4\nrun:\n  db:\n    provider: {schemaVersion: v1}\n    plan: {id: 0}\n",
        "incomplete-managed-service",
        3,
        3,
    );
    expect_at("schemaVersion: v0.4\nrun:\n  db:\n    provider: {name: pg}\n    plan: {parameters: {cpu: 1}}\n", "incomplete-managed-service", 5, 11);
}

fn catalogue() -> PlanCatalogue {
    PlanCatalogue::from_json(r#"[{"id": 8, "title": "Micro", "cpu": 0.5, "memory": 1073741824, "maxReplicas": 2}, {"id": 9, "title": "Old", "cpu": 1, "memory": 1, "deprecated": true}]"#).unwrap()
}

#[test]
fn plan_catalogue_rules() {
    let opts = ParseOptions {
        plans: Some(catalogue()),
        ..Default::default()
    };
    let p = parse_with(
        "t",
        svc(&format!("    plan: 77\n{ROUTED}")).as_bytes(),
        &opts,
    );
    let d = p
        .diagnostics
        .iter()
        .find(|d| d.code == "unknown-plan")
        .expect("unknown-plan");
    assert_eq!((d.span.start.line, d.span.start.col), (4, 11));
    assert!(d.help.as_deref().unwrap().contains("8, 9"));
    let p = parse_with(
        "t",
        svc(&format!("    plan: 8\n    replicas: 3\n{ROUTED}")).as_bytes(),
        &opts,
    );
    let d = p
        .diagnostics
        .iter()
        .find(|d| d.code == "too-many-replicas")
        .expect("too-many-replicas");
    assert_eq!((d.span.start.line, d.span.start.col), (5, 15));
    let p = parse_with(
        "t",
        svc(&format!("    plan: 9\n{ROUTED}")).as_bytes(),
        &opts,
    );
    assert!(p
        .diagnostics
        .iter()
        .any(|d| d.code == "deprecated-plan" && d.severity == Severity::Warning));
    // without a catalogue none of this is checked
    assert!(!parse_str("t", &svc(&format!("    plan: 77\n{ROUTED}"))).has_errors());
}

#[test]
fn invalid_health_endpoint() {
    expect_at(
        &svc("    healthEndpoint: ftp://localhost/\n"),
        "invalid-health-endpoint",
        4,
        21,
    );
    expect_at(
        &svc("    healthEndpoint: tcp://localhost\n"),
        "invalid-health-endpoint",
        4,
        21,
    );
}

// ---- warnings ----

fn warn_at(src: &str, code: &str, line: u32, col: u32) {
    let d = expect_at(src, code, line, col);
    assert_eq!(d.severity, Severity::Warning, "{code} should be a warning");
    let p = parse_str("t", src);
    assert!(
        !p.has_errors(),
        "no errors expected with the {code} warning: {:?}",
        p.errors().collect::<Vec<_>>()
    );
}

#[test]
fn warning_legacy_network() {
    warn_at(
        &svc("    steps: []\n    network:\n      path: /api\n      stripPath: true\n"),
        "legacy-network",
        6,
        13,
    );
}

#[test]
fn warning_path_port_not_in_ports() {
    warn_at(
        &svc("    network:\n      ports: [{port: 3000}]\n      paths: [{port: 8080, path: /}]\n"),
        "undeclared-route-port",
        6,
        22,
    );
}

#[test]
fn warning_service_without_route() {
    warn_at(
        &svc("    steps:\n      - command: ./worker\n"),
        "no-route",
        3,
        3,
    );
}

#[test]
fn warning_default_health_port_undeclared() {
    warn_at(
        &svc("    network:\n      ports: [{port: 8080}]\n      paths: [{port: 8080, path: /}]\n"),
        "health-port-undeclared",
        3,
        3,
    );
}

#[test]
fn warning_service_level_is_public_beside_ports() {
    warn_at(
        &svc(&format!("    isPublic: true\n{ROUTED}")),
        "service-is-public-ignored",
        4,
        15,
    );
}

#[test]
fn warning_deprecated_names() {
    warn_at(
        &svc(&format!("    baseImage: nginx:1.27\n{ROUTED}")),
        "deprecated",
        4,
        16,
    );
    warn_at(
        &svc(&format!("    mountSubPath: data\n{ROUTED}")),
        "deprecated",
        4,
        19,
    );
    warn_at(
        "schemaVersion: v0.4\nrun:\n  db:\n    provider:\n      name: pg\n      version: v1\n    plan: {id: 0}\n",
        "deprecated",
        6,
        16,
    );
    // provider.version is fine before v0.4
    let p = parse_str("t", "schemaVersion: v0.2\nrun:\n  db:\n    provider: {name: pg, version: v1}\n    plan: {id: 0}\n");
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
}

#[test]
fn warning_empty_command() {
    warn_at(
        "prepare:\n  steps:\n    - command: \"\"\nrun:\n  steps: []\n",
        "empty-command",
        3,
        16,
    );
}

#[test]
fn warning_literal_secret() {
    warn_at(
        &svc(&format!(
            "    env:\n      DB_PASSWORD: hunter22\n      API_TOKEN: ${{{{ vault.T }}}}\n{ROUTED}"
        )),
        "literal-secret",
        5,
        20,
    );
    let p = parse_str(
        "t",
        &svc(&format!(
            "    env:\n      API_TOKEN: ${{{{ vault.T }}}}\n{ROUTED}"
        )),
    );
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
}

#[test]
fn warning_unpinned_image() {
    warn_at(
        &svc(&format!("    image: nginx\n{ROUTED}")),
        "unpinned-image",
        4,
        12,
    );
    warn_at(
        &svc(&format!("    image: nginx:latest\n{ROUTED}")),
        "unpinned-image",
        4,
        12,
    );
}

#[test]
fn warning_reactive_privileged_port() {
    warn_at(&svc("    steps: []\n    healthEndpoint: http://localhost:80/\n    network:\n      ports: [{port: 80}]\n      paths: [{port: 80, path: /}]\n"), "privileged-port", 7, 22);
    // a managed container may bind it
    let p = parse_str("t", &svc("    image: mail:1.0\n    healthEndpoint: tcp://localhost:25\n    network:\n      ports: [{port: 25}]\n      paths: [{port: 25, path: /}]\n"));
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
}

#[test]
fn all_problems_are_reported_at_once() {
    let src = "schemaVersion: v0.4\nrun:\n  Web:\n    replicas: 0\n    isPublic: yes\n    colour: blue\n    network:\n      ports: [{port: 99999}]\n";
    let p = parse_str("t", src);
    let codes: Vec<_> = p.errors().map(|d| d.code).collect();
    for c in [
        "invalid-service-name",
        "out-of-range",
        "wrong-type",
        "unknown-key",
    ] {
        assert!(codes.contains(&c), "missing {c} in {codes:?}");
    }
    assert!(codes.len() >= 5, "{codes:?}");
    // sorted by position
    let lines: Vec<_> = p.diagnostics.iter().map(|d| d.span.start).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[test]
fn anchors_aliases_and_merge_keys_work() {
    let src = "schemaVersion: v0.4\nx-base: &base\n  plan: 8\n  replicas: 2\nrun:\n  web:\n    <<: *base\n    replicas: 3\n    steps: []\n    network:\n      ports: [{port: 3000}]\n      paths: [{port: 3000, path: /}]\n";
    let p = parse_str("t", src);
    // `x-base` is an unknown top-level key (reported), but the merge works
    assert_eq!(
        p.errors().map(|d| d.code).collect::<Vec<_>>(),
        vec!["unknown-key"]
    );
    let web = p.landscape.as_ref().unwrap().service("web").unwrap();
    assert_eq!(web.plan_id(), Some(8));
    assert_eq!(web.replicas(), 3, "explicit keys win over merged ones");
}
