//! The sample, the showcase and every corpus file render; golden files pin the sample and
//! showcase output (reviewed by hand; `UPDATE_GOLDEN=1` rewrites them after an intended
//! change), and specific mappings are asserted by meaning.

mod common;

use common::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use landscape_k8s::{Object, Options, Routes, ScaleToZero, SecretValues};
use std::collections::BTreeMap;

fn golden(name: &str, yaml: &str) {
    let path = manifest(&format!("tests/golden/{name}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, yaml).unwrap();
    }
    let want =
        std::fs::read_to_string(&path).expect("golden file missing: run with UPDATE_GOLDEN=1");
    assert!(
        want == yaml,
        "{name} changed; review the diff and rerun with UPDATE_GOLDEN=1\n{yaml}"
    );
}

fn sample() -> landscape_spec::Landscape {
    parse(
        "ci.yml",
        &std::fs::read_to_string(manifest("../examples/sample/ci.yml")).unwrap(),
    )
}

fn showcase() -> landscape_spec::Landscape {
    parse(
        "ci.yml",
        &std::fs::read_to_string(manifest("../examples/showcase/ci.yml")).unwrap(),
    )
}

#[test]
fn sample_renders_like_the_golden_file() {
    let l = sample();
    let opts = options();
    let r = landscape_k8s::render(&l, &opts).unwrap();
    check_invariants("sample", &l, &opts, &r);
    golden("sample.yaml", &r.to_yaml());
}

#[test]
fn showcase_renders_like_the_golden_file() {
    let l = showcase();
    let opts = options();
    let r = landscape_k8s::render(&l, &opts).unwrap();
    check_invariants("showcase", &l, &opts, &r);
    golden("showcase.yaml", &r.to_yaml());
}

#[test]
fn showcase_ingress_renders_like_the_golden_file() {
    let l = showcase();
    let opts = Options {
        routes: Routes::Ingress,
        ingress_class: Some("nginx".into()),
        ..options()
    };
    let r = landscape_k8s::render(&l, &opts).unwrap();
    assert_eq!(r.of_kind("HTTPRoute").count(), 0);
    // stripPath cannot be expressed on an Ingress: a warning at the stripPath position.
    let w = r
        .warnings
        .iter()
        .find(|w| w.code == "k8s-ingress-strip-ignored")
        .unwrap();
    assert_eq!((w.span.start.line, w.span.start.col), (43, 22));
    golden("showcase-ingress.yaml", &r.to_yaml());
}

#[test]
fn every_corpus_file_renders() {
    let files = corpus();
    assert!(files.len() >= 28, "{}", files.len());
    for (name, src) in files {
        let l = parse(&name, &src);
        let opts = options();
        let r = landscape_k8s::render(&l, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_invariants(&name, &l, &opts, &r);
        let keda = Options {
            scale_to_zero: Some(ScaleToZero::default()),
            ..options()
        };
        let rk = landscape_k8s::render(&l, &keda).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_invariants(&format!("{name} keda"), &l, &keda, &rk);
        for w in &r.warnings {
            assert!(
                w.span.start.line >= 1,
                "{name}: warning without a position: {w:?}"
            );
        }
    }
}

#[test]
fn sample_mapping_by_meaning() {
    let r = landscape_k8s::render(&sample(), &options()).unwrap();
    // Apply order: setup, then the stage Jobs, then the services.
    let kinds: Vec<&str> = r.objects.iter().map(|o| o.kind()).collect();
    assert_eq!(
        &kinds[..5],
        ["Namespace", "PersistentVolumeClaim", "Secret", "Job", "Job"]
    );
    // api: two replicas, probes from healthEndpoint, the token from the vault Secret.
    let api = container(&r, "api");
    for p in [
        &api.startup_probe,
        &api.readiness_probe,
        &api.liveness_probe,
    ] {
        let h = p.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(
            (h.path.as_deref(), &h.port),
            (Some("/health"), &IntOrString::Int(3000))
        );
    }
    let tok = api
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "API_TOKEN")
        .unwrap();
    let key = tok
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("vault", "SAMPLE_API_TOKEN")
    );
    // The Secret lists its keys but holds no value when no vault was passed.
    let Some(Object::Secret(s)) = r.find("Secret", "vault") else {
        panic!()
    };
    assert!(s.data.is_none() && s.string_data.is_none());
    assert_eq!(
        s.metadata.annotations.as_ref().unwrap()["landscape.dev/required-keys"],
        "SAMPLE_API_TOKEN"
    );
    assert!(r.notes[0].contains("SAMPLE_API_TOKEN") && r.to_yaml().contains("# note: "));
    // web: no healthEndpoint, so a TCP probe on its first port (as the local supervisor).
    let web = container(&r, "web");
    assert_eq!(
        web.readiness_probe
            .as_ref()
            .unwrap()
            .tcp_socket
            .as_ref()
            .unwrap()
            .port,
        IntOrString::Int(3000)
    );
    assert_eq!(
        web.env.as_ref().unwrap()[0].value.as_deref(),
        Some("http://api:3000/")
    );
    // worker: no port, so no Service and no probe.
    assert!(
        r.find("Service", "worker").is_none() && container(&r, "worker").liveness_probe.is_none()
    );
    // The prepare command's `$(date ...)` reaches the shell as written (kubelet escaping).
    let Some(Object::Job(j)) = r.find("Job", "prepare") else {
        panic!()
    };
    let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let cmd = &pod.containers[0].command.as_ref().unwrap()[2];
    assert!(cmd.contains("\"s/@BUILT@/$$(date -u"), "{cmd}");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod.containers[0].working_dir.as_deref(),
        Some("/home/user/app")
    );
    assert_eq!(j.spec.as_ref().unwrap().backoff_limit, Some(0));
}

#[test]
fn showcase_mapping_by_meaning() {
    let r = landscape_k8s::render(&showcase(), &options()).unwrap();
    // Plan 8 (0.5 cores, 1 GiB): requests = limits.
    let f = container(&r, "frontend");
    let res = f.resources.as_ref().unwrap();
    assert_eq!(res.limits.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "1Gi");
    // api: /api with stripPath -> ReplacePrefixMatch "/"; frontend's / is forwarded as is.
    let Some(Object::HttpRoute(api)) = r.find("HTTPRoute", "api") else {
        panic!()
    };
    let rw = api.spec.rules[0].filters[0].url_rewrite.as_ref().unwrap();
    assert_eq!(
        rw.path.as_ref().unwrap().replace_prefix_match.as_deref(),
        Some("/")
    );
    assert_eq!(api.spec.parent_refs[0].name, "landscape");
    let Some(Object::HttpRoute(fr)) = r.find("HTTPRoute", "frontend") else {
        panic!()
    };
    assert!(fr.spec.rules[0].filters.is_empty());
    // PUBLIC_URL uses workspace.devDomain, not given: a warning at the value's position.
    let w = r
        .warnings
        .iter()
        .find(|w| w.code == "k8s-context-missing")
        .unwrap();
    assert_eq!((w.span.start.line, w.span.start.col), (47, 19));
    // worker: a container image, its argv, /srv from the `worker` part of the app directory.
    let wk = container(&r, "worker");
    assert_eq!(wk.image.as_deref(), Some("node:22-alpine"));
    assert_eq!(
        wk.command.as_deref(),
        Some(&["node".to_string(), "worker.js".to_string()][..])
    );
    let srv = wk
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == "/srv")
        .unwrap();
    assert_eq!(
        (srv.name.as_str(), srv.sub_path.as_deref()),
        ("app", Some("worker"))
    );
    // A root-by-default image keeps the capabilities root entrypoints need, and no more.
    let caps = wk
        .security_context
        .as_ref()
        .unwrap()
        .capabilities
        .as_ref()
        .unwrap();
    assert!(caps.add.as_ref().unwrap().contains(&"CHOWN".to_string()));
    // db: a managed service, not rendered, with a warning at its name.
    assert!(r.find("Deployment", "db").is_none());
    let w = r
        .warnings
        .iter()
        .find(|w| w.code == "k8s-managed-service-skipped")
        .unwrap();
    assert_eq!(w.span.start.line, 58);
    // The claim for the shared app directory.
    let Some(Object::PersistentVolumeClaim(c)) = r.find("PersistentVolumeClaim", "app") else {
        panic!()
    };
    assert_eq!(
        c.spec.as_ref().unwrap().access_modes.as_deref(),
        Some(&["ReadWriteMany".to_string()][..])
    );
}

#[test]
fn resolved_vault_values_fill_the_secret_and_compose_with_text() {
    let src = "schemaVersion: v0.4
run:
  api:
    steps: [{command: ./api}]
    env:
      DB_URL: postgres://app:${{ vault.DB_PASSWORD }}@db:5432/app?x=$(literal)
      DB_PASSWORD: ${{ vault.DB_PASSWORD }}
      TOKEN: ${{ vault.TOKEN }}
";
    let l = parse("ci.yml", src);
    let opts = Options {
        vault: Some(SecretValues(BTreeMap::from([(
            "DB_PASSWORD".to_string(),
            "s3cr3t-value".to_string(),
        )]))),
        ..options()
    };
    let r = landscape_k8s::render(&l, &opts).unwrap();
    check_invariants("vault", &l, &opts, &r);
    let Some(Object::Secret(s)) = r.find("Secret", "vault") else {
        panic!()
    };
    assert_eq!(s.data.as_ref().unwrap()["DB_PASSWORD"].0, b"s3cr3t-value");
    // TOKEN has no value: a warning at its use, and the key is absent (the pod would not start).
    assert!(!s.data.as_ref().unwrap().contains_key("TOKEN"));
    let w = r
        .warnings
        .iter()
        .find(|w| w.code == "k8s-vault-value-missing")
        .unwrap();
    assert_eq!((w.span.start.line, w.span.start.col), (8, 14));
    assert!(
        !format!("{opts:?}").contains("s3cr3t"),
        "Debug shows a secret value"
    );
    // The composed value refers to a helper variable defined before it; the literal
    // `$(literal)` is escaped so the kubelet does not expand it.
    let env = container(&r, "api").env.clone().unwrap();
    let helper = env
        .iter()
        .position(|e| e.name == "LANDSCAPE_VAULT_DB_PASSWORD")
        .unwrap();
    let url = env.iter().position(|e| e.name == "DB_URL").unwrap();
    assert!(helper < url);
    assert_eq!(
        env[url].value.as_deref(),
        Some("postgres://app:$(LANDSCAPE_VAULT_DB_PASSWORD)@db:5432/app?x=$$(literal)")
    );
    // The value is in the Secret only: never in a Deployment's YAML.
    let yaml = r.to_yaml();
    let deploy = &yaml[yaml.find("kind: Deployment").unwrap()..];
    assert!(!deploy.contains("s3cr3t"));
}

#[test]
fn headless_routes_and_public_ports() {
    let src = "schemaVersion: v0.4
run:
  docs:
    network:
      paths:
        - path: /docs
          target: http://docs-${{ team.id }}.internal:8000/v1
          stripPath: true
        - path: /blog
          target: https://blog.example.com/
  web:
    steps: [{command: ./web}]
    network:
      ports: [{port: 3000, isPublic: true}]
      paths: [{port: 3000, path: /}]
";
    let l = parse("ci.yml", src);
    let mut opts = options();
    opts.context.team_id = Some("t9".into());
    opts.context.workspace_id = Some("ws1".into());
    opts.context.dev_domain = Some("dev.example".into());
    let r = landscape_k8s::render(&l, &opts).unwrap();
    check_invariants("headless", &l, &opts, &r);
    let Some(Object::Service(docs)) = r.find("Service", "docs") else {
        panic!()
    };
    assert_eq!(
        docs.spec.as_ref().unwrap().external_name.as_deref(),
        Some("docs-t9.internal")
    );
    let Some(Object::Service(blog)) = r.find("Service", "docs-2") else {
        panic!()
    };
    assert_eq!(
        blog.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        443
    );
    let Some(Object::HttpRoute(h)) = r.find("HTTPRoute", "docs") else {
        panic!()
    };
    // As the local router: /docs/x -> http://docs-t9.internal:8000/v1/x.
    let rw = h.spec.rules[0].filters[0].url_rewrite.as_ref().unwrap();
    assert_eq!(rw.hostname.as_deref(), Some("docs-t9.internal"));
    assert_eq!(
        rw.path.as_ref().unwrap().replace_prefix_match.as_deref(),
        Some("/v1")
    );
    // /blog (no strip, no base path): the Host header only.
    let rw = h.spec.rules[1].filters[0].url_rewrite.as_ref().unwrap();
    assert!(rw.path.is_none() && rw.hostname.as_deref() == Some("blog.example.com"));
    assert!(r
        .warnings
        .iter()
        .any(|w| w.code == "k8s-target-partial" && w.span.start.line == 10));
    // The public port: its own host name, as `landscape router` builds it.
    let Some(Object::HttpRoute(p)) = r.find("HTTPRoute", "web-3000") else {
        panic!()
    };
    assert_eq!(p.spec.hostnames, ["ws1-3000-web.dev.example"]);
}

#[test]
fn sample_scaled_to_zero_with_keda() {
    let l = sample();
    let opts = Options {
        scale_to_zero: Some(ScaleToZero {
            idle_seconds: 120,
            ..ScaleToZero::default()
        }),
        ..options()
    };
    let r = landscape_k8s::render(&l, &opts).unwrap();
    check_invariants("sample keda", &l, &opts, &r);
    // Only web has a public path: it alone gets an HTTPScaledObject.
    let scaled: Vec<&str> = r.of_kind("HTTPScaledObject").map(|o| o.name()).collect();
    assert_eq!(scaled, ["web"]);
    let Some(Object::HttpScaledObject(h)) = r.find("HTTPScaledObject", "web") else {
        panic!()
    };
    assert_eq!(h.api_version, "http.keda.sh/v1alpha1");
    let t = &h.spec.scale_target_ref;
    assert_eq!(
        (
            t.name.as_str(),
            t.kind.as_str(),
            t.api_version.as_str(),
            t.service.as_str(),
            t.port
        ),
        ("web", "Deployment", "apps/v1", "web", 3000)
    );
    assert_eq!((h.spec.replicas.min, h.spec.replicas.max), (0, 1));
    assert_eq!(h.spec.hosts, ["web.shop.svc"]);
    assert_eq!(h.spec.path_prefixes, ["/"]);
    assert_eq!(h.spec.scaledown_period, Some(120));
    // web's Deployment leaves its replicas to KEDA; api keeps its two.
    let replicas = |n: &str| match r.find("Deployment", n) {
        Some(Object::Deployment(d)) => d.spec.as_ref().unwrap().replicas,
        _ => panic!(),
    };
    assert_eq!((replicas("web"), replicas("api")), (None, Some(2)));
    // The route goes through the interceptor and sets the Host header it routes by.
    let Some(Object::HttpRoute(route)) = r.find("HTTPRoute", "web") else {
        panic!()
    };
    let rule = &route.spec.rules[0];
    let b = &rule.backend_refs[0];
    assert_eq!(
        (b.name.as_str(), b.namespace.as_deref(), b.port),
        ("keda-add-ons-http-interceptor-proxy", Some("keda"), 8080)
    );
    let rw = rule.filters[0].url_rewrite.as_ref().unwrap();
    assert_eq!(rw.hostname.as_deref(), Some("web.shop.svc"));
    assert!(rw.path.is_none(), "web does not strip its path");
    // api and worker have no public paths: not scaled, a warning at each name.
    let not_scaled: Vec<(u32, u32)> = r
        .warnings
        .iter()
        .filter(|w| w.code == "k8s-not-scaled-to-zero")
        .map(|w| (w.span.start.line, w.span.start.col))
        .collect();
    assert_eq!(not_scaled, [(30, 3), (41, 3)]);
    assert!(r
        .warnings
        .iter()
        .any(|w| w.message.contains("\"worker\"") && w.message.contains("no public paths")));
    // The note says what to install and gives the ReferenceGrant.
    let note = r
        .notes
        .iter()
        .find(|n| n.contains("scale-to-zero"))
        .unwrap();
    assert!(note.contains("kind: ReferenceGrant") && note.contains("namespace: shop"));
    assert!(r.to_yaml().contains("kind: HTTPScaledObject"));
}

#[test]
fn scale_to_zero_strip_plan_max_and_ingress() {
    let src = "schemaVersion: v0.4
run:
  api:
    plan: 8
    replicas: 2
    steps: [{command: ./api}]
    network:
      ports: [{port: 3000}]
      paths: [{port: 3000, path: /api/, stripPath: true}, {port: 3000, path: /v2}]
  web:
    steps: [{command: ./web}]
    network:
      ports: [{port: 80}, {port: 81}]
      paths: [{port: 80, path: /}, {port: 81, path: /admin}]
";
    let l = parse("ci.yml", src);
    let opts = Options {
        scale_to_zero: Some(ScaleToZero {
            max_replicas: Some(10),
            ..ScaleToZero::default()
        }),
        ..options()
    };
    let r = landscape_k8s::render(&l, &opts).unwrap();
    check_invariants("keda strip", &l, &opts, &r);
    let Some(Object::HttpScaledObject(h)) = r.find("HTTPScaledObject", "api") else {
        panic!()
    };
    // Asked for 10, plan 8 allows 3.
    assert_eq!(h.spec.replicas.max, 3);
    // The HTTPRoute strips /api before the interceptor sees the request.
    assert_eq!(h.spec.path_prefixes, ["/"]);
    let Some(Object::HttpRoute(route)) = r.find("HTTPRoute", "api") else {
        panic!()
    };
    let rw = route.spec.rules[0].filters[0].url_rewrite.as_ref().unwrap();
    assert_eq!(
        (
            rw.hostname.as_deref(),
            rw.path.as_ref().unwrap().replace_prefix_match.as_deref()
        ),
        (Some("api.shop.svc"), Some("/"))
    );
    // web: traffic on two ports, which one HTTPScaledObject cannot forward: not scaled.
    assert!(r.find("HTTPScaledObject", "web").is_none());
    let w = r
        .warnings
        .iter()
        .find(|w| w.code == "k8s-not-scaled-to-zero")
        .unwrap();
    assert!(w.message.contains("ports 80, 81"), "{}", w.message);
    assert_eq!(w.span.start.line, 14);
    // Ingress: the interceptor through an ExternalName Service; the original host and paths.
    let opts = Options {
        routes: Routes::Ingress,
        hostnames: vec!["shop.example".into()],
        ..opts
    };
    let r = landscape_k8s::render(&l, &opts).unwrap();
    check_yaml_round_trip("keda ingress", &r);
    let Some(Object::Service(alias)) = r.find("Service", "keda-interceptor") else {
        panic!()
    };
    assert_eq!(
        alias.spec.as_ref().unwrap().external_name.as_deref(),
        Some("keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local")
    );
    let Some(Object::HttpScaledObject(h)) = r.find("HTTPScaledObject", "api") else {
        panic!()
    };
    assert_eq!(h.spec.hosts, ["shop.example"]);
    assert_eq!(h.spec.path_prefixes, ["/api", "/v2"]);
    let Some(Object::Ingress(ing)) = r.find("Ingress", "api") else {
        panic!()
    };
    let backend = ing.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
        .http
        .as_ref()
        .unwrap()
        .paths[0]
        .backend
        .service
        .clone()
        .unwrap();
    assert_eq!(backend.name, "keda-interceptor");
    // Without the option nothing changes: no HTTPScaledObject, no warning of this kind.
    let r = landscape_k8s::render(&l, &options()).unwrap();
    assert_eq!(r.of_kind("HTTPScaledObject").count(), 0);
    assert!(r
        .warnings
        .iter()
        .all(|w| w.code != "k8s-not-scaled-to-zero"));
}
