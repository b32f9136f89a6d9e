//! Helpers shared by the integration tests: reading inputs, and the invariants every
//! rendering must satisfy (checked on the sample, the corpus and generated landscapes).
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Container;
use landscape_k8s::{Object, Options, Rendered};
use landscape_spec::{Landscape, Part, PlanCatalogue, Reference, ServiceKind};
use std::path::PathBuf;

pub fn manifest(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

pub fn plans() -> PlanCatalogue {
    PlanCatalogue::from_json(&std::fs::read_to_string(manifest("tests/data/plans.json")).unwrap())
        .unwrap()
}

pub fn options() -> Options {
    Options {
        namespace: "shop".into(),
        plans: Some(plans()),
        image: Some("registry.example/workspace:2026".into()),
        ..Options::default()
    }
}

pub fn parse(name: &str, src: &str) -> Landscape {
    let p = landscape_spec::parse_str(name, src);
    assert!(!p.has_errors(), "{name}: {:?}", p.diagnostics);
    p.landscape.unwrap()
}

/// The corpus of real ci.yml files beside the repository.
pub fn corpus() -> Vec<(String, String)> {
    let dir = manifest("../../shared/corpus/codesphere-ci");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus missing at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

pub fn container<'a>(r: &'a Rendered, name: &str) -> &'a Container {
    let Some(Object::Deployment(d)) = r.find("Deployment", name) else {
        panic!("no Deployment {name}")
    };
    &d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

/// Every invariant of a rendering, against the (upgraded) model it came from.
pub fn check_invariants(what: &str, l: &Landscape, opts: &Options, r: &Rendered) {
    let up = landscape_spec::upgrade(l).landscape;
    for o in &r.objects {
        let m = o.metadata();
        let labels = m.labels.as_ref().unwrap();
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "landscape",
            "{what}"
        );
        assert_eq!(
            labels["app.kubernetes.io/part-of"], opts.namespace,
            "{what}"
        );
        if o.kind() != "Namespace" {
            assert_eq!(
                m.namespace.as_deref(),
                Some(opts.namespace.as_str()),
                "{what}"
            );
        }
    }
    for s in up.services() {
        let name = s.name.value.as_str();
        match s.kind() {
            ServiceKind::ManagedService => {
                assert!(r.find("Deployment", name).is_none(), "{what}: {name}");
                assert!(
                    r.warnings.iter().any(
                        |w| w.code == "k8s-managed-service-skipped" && w.message.contains(name)
                    ),
                    "{what}: managed service {name} skipped without a warning"
                );
                continue;
            }
            ServiceKind::HeadlessRoute => {
                let Some(Object::Service(svc)) = r.find("Service", name) else {
                    panic!("{what}: headless {name} has no ExternalName Service")
                };
                assert_eq!(
                    svc.spec.as_ref().unwrap().type_.as_deref(),
                    Some("ExternalName")
                );
                continue;
            }
            _ => {}
        }
        let Some(Object::Deployment(d)) = r.find("Deployment", name) else {
            panic!("{what}: no Deployment for {name}")
        };
        let spec = d.spec.as_ref().unwrap();
        // Scaled to zero: KEDA owns the replicas, between 0 and the HTTPScaledObject's max.
        let scaled = match r.find("HTTPScaledObject", name) {
            Some(Object::HttpScaledObject(h)) => {
                assert!(opts.scale_to_zero.is_some(), "{what}: {name}");
                let t = &h.spec.scale_target_ref;
                assert_eq!(
                    (t.name.as_str(), t.kind.as_str(), t.api_version.as_str()),
                    (name, "Deployment", "apps/v1"),
                    "{what}"
                );
                assert_eq!(t.service, name, "{what}");
                assert!(r.find("Service", name).is_some(), "{what}: {name}");
                assert_eq!(h.spec.replicas.min, 0, "{what}");
                assert!(h.spec.replicas.max >= 1, "{what}");
                assert_eq!(spec.replicas, None, "{what}: {name} replicas");
                true
            }
            _ => {
                assert_eq!(
                    spec.replicas,
                    Some(s.replicas() as i32),
                    "{what}: {name} replicas"
                );
                false
            }
        };
        // The selector picks this Deployment's pods.
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
            assert_eq!(pod_labels.get(k), Some(v), "{what}: {name} selector");
        }
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        // Plan -> requests = limits, with the catalogue's numbers.
        if let (Some(id), Some(cat)) = (s.plan_id(), &opts.plans) {
            let plan = cat.get(id).unwrap();
            let res = c.resources.as_ref().unwrap();
            assert_eq!(res.requests, res.limits, "{what}: {name}");
            let req = res.requests.as_ref().unwrap();
            assert_eq!(
                quantity_cores(&req["cpu"].0),
                plan.cpu,
                "{what}: {name} cpu"
            );
            assert_eq!(
                quantity_bytes(&req["memory"].0),
                plan.memory,
                "{what}: {name} memory"
            );
        }
        // Every port has a Service port (and a container port), targeting itself.
        let ports: Vec<u16> = s
            .network
            .iter()
            .flat_map(|n| n.ports.iter().map(|p| p.port.value))
            .collect();
        if ports.is_empty() {
            assert!(r.find("Service", name).is_none(), "{what}: {name}");
        } else {
            let Some(Object::Service(svc)) = r.find("Service", name) else {
                panic!("{what}: no Service for {name}")
            };
            let sspec = svc.spec.as_ref().unwrap();
            assert_eq!(sspec.type_.as_deref(), Some("ClusterIP"));
            for (k, v) in sspec.selector.as_ref().unwrap() {
                assert_eq!(
                    pod_labels.get(k),
                    Some(v),
                    "{what}: {name} service selector"
                );
            }
            for p in &ports {
                let sp = sspec
                    .ports
                    .as_ref()
                    .unwrap()
                    .iter()
                    .find(|sp| sp.port == *p as i32);
                let sp =
                    sp.unwrap_or_else(|| panic!("{what}: {name} port {p} has no Service port"));
                assert_eq!(
                    sp.target_port,
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(*p as i32))
                );
                assert!(c
                    .ports
                    .as_ref()
                    .unwrap()
                    .iter()
                    .any(|cp| cp.container_port == *p as i32));
            }
        }
        // Every vault reference of the env comes from the vault Secret.
        for (_, v) in s.env() {
            for rf in v.value.value.references() {
                if let Reference::Vault(key) = rf {
                    assert!(
                        c.env.iter().flatten().any(|e| e
                            .value_from
                            .as_ref()
                            .and_then(|f| f.secret_key_ref.as_ref())
                            .is_some_and(|k| k.name == "vault" && &k.key == key)),
                        "{what}: {name} vault.{key} has no secretKeyRef"
                    );
                }
            }
            // No secret value is ever written into the env.
            if v.value
                .value
                .parts()
                .iter()
                .any(|p| matches!(p, Part::Ref(Reference::Vault(_))))
            {
                assert!(
                    opts.vault.is_none()
                        || c.env.iter().flatten().all(|e| {
                            opts.vault.as_ref().unwrap().0.values().all(|sv| {
                                e.value
                                    .as_deref()
                                    .is_none_or(|ev| !ev.contains(sv.as_str()))
                            })
                        })
                );
            }
        }
        // Security context on every container.
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        // Every routed path: exactly one HTTPRoute rule, with the rewrite exactly when stripPath.
        for p in s.network.iter().flat_map(|n| n.paths.iter()) {
            let port = p.port.as_ref().map(|q| q.value).unwrap_or_else(|| ports[0]);
            let prefix = normalise(&p.path.value);
            // Path routes carry the options' host names (public-port routes their own).
            let rules: Vec<_> = r
                .of_kind("HTTPRoute")
                .flat_map(|o| match o {
                    Object::HttpRoute(h) if h.spec.hostnames == opts.hostnames => {
                        h.spec.rules.iter()
                    }
                    Object::HttpRoute(_) => [].iter(),
                    _ => unreachable!(),
                })
                .filter(|rule| {
                    rule.matches
                        .iter()
                        .any(|m| m.path.type_ == "PathPrefix" && m.path.value == prefix)
                        && rule.backend_refs.iter().any(|b| {
                            if scaled {
                                // Through the interceptor, which routes by the Host header.
                                let host = format!("{name}.{}.svc", opts.namespace);
                                b.name == "keda-add-ons-http-interceptor-proxy"
                                    && b.port == 8080
                                    && rule.filters.iter().any(|f| {
                                        f.url_rewrite.as_ref().and_then(|u| u.hostname.as_ref())
                                            == Some(&host)
                                    })
                            } else {
                                b.name == name && b.port == port
                            }
                        })
                })
                .collect();
            assert_eq!(rules.len(), 1, "{what}: {name} path {prefix}: {rules:?}");
            let rewrite = rules[0].filters.iter().find(|f| f.type_ == "URLRewrite");
            if p.strip() {
                let path = rewrite
                    .and_then(|f| f.url_rewrite.as_ref())
                    .and_then(|u| u.path.as_ref())
                    .unwrap_or_else(|| panic!("{what}: {name} {prefix} strips without a rewrite"));
                assert_eq!(path.type_, "ReplacePrefixMatch");
                assert_eq!(path.replace_prefix_match.as_deref(), Some("/"));
            } else {
                assert!(
                    rewrite
                        .and_then(|f| f.url_rewrite.as_ref())
                        .is_none_or(|u| scaled && u.path.is_none()),
                    "{what}: {name} {prefix} rewrites without stripPath"
                );
            }
        }
    }
    // The YAML reads back as the same objects.
    check_yaml_round_trip(what, r);
}

/// Splits the YAML into documents and reads each with landscape-spec's YAML reader.
pub fn check_yaml_round_trip(what: &str, r: &Rendered) {
    let yaml = r.to_yaml();
    let docs: Vec<&str> = yaml.split("\n---\n").skip(1).collect();
    assert_eq!(docs.len(), r.objects.len(), "{what}");
    for (doc, o) in docs.iter().zip(&r.objects) {
        let mut diags = Vec::new();
        let node = landscape_spec::yaml::parse_document(doc, &Default::default(), &mut diags)
            .unwrap_or_else(|| panic!("{what}: unreadable YAML {diags:?}\n{doc}"));
        assert!(diags.is_empty(), "{what}: {diags:?}");
        assert_eq!(
            node.to_json(),
            o.to_json(),
            "{what}: {} {}",
            o.kind(),
            o.name()
        );
    }
}

pub fn normalise(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.into()
    }
}

pub fn quantity_cores(q: &str) -> f64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse::<f64>().unwrap() / 1000.0,
        None => q.parse().unwrap(),
    }
}

pub fn quantity_bytes(q: &str) -> u64 {
    for (u, s) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if let Some(n) = q.strip_suffix(u) {
            return n.parse::<u64>().unwrap() * s;
        }
    }
    q.parse().unwrap()
}
