//! Generated landscapes: every routed path has exactly one HTTPRoute rule with the right
//! rewrite, every port a Service port, replicas and resources match the plan (see
//! `common::check_invariants`), and the YAML reads back as the same objects.

mod common;

use common::*;
use proptest::prelude::*;
use std::fmt::Write as _;

#[derive(Clone, Debug)]
struct Svc {
    container: bool,
    plan: Option<u64>,
    replicas: u32,
    ports: Vec<u16>,
    /// (path index, port index, stripPath)
    paths: Vec<(usize, bool)>,
    health: Option<bool>,
    vault: bool,
    user: Option<u32>,
}

fn svc() -> impl Strategy<Value = Svc> {
    (
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![8u64, 9, 20, 101, 401])),
        1u32..4,
        prop::collection::btree_set(1024u16..65535, 0..4),
        prop::collection::vec((0usize..4, any::<bool>()), 0..4),
        prop::option::of(any::<bool>()),
        any::<bool>(),
        prop::option::of(0u32..2000),
    )
        .prop_map(
            |(container, plan, replicas, ports, paths, health, vault, user)| {
                let ports: Vec<u16> = ports.into_iter().collect();
                let paths = if ports.is_empty() { Vec::new() } else { paths };
                Svc {
                    container,
                    plan,
                    replicas,
                    ports,
                    paths,
                    health,
                    vault,
                    user,
                }
            },
        )
}

fn yaml(services: &[Svc]) -> String {
    let mut s = String::from(
        "schemaVersion: v0.4\nprepare:\n  steps:\n    - command: echo $$ && make\nrun:\n",
    );
    let mut route = 0;
    for (i, v) in services.iter().enumerate() {
        let _ = writeln!(s, "  svc-{i}:");
        if v.container {
            let _ = writeln!(s, "    image: registry.example/s{i}:1.0\n    command: [\"/bin/s{i}\", \"--port=$(PORT)\"]");
        } else {
            let _ = writeln!(s, "    steps:\n      - command: ./run {i}");
        }
        if let Some(p) = v.plan {
            let _ = writeln!(s, "    plan: {p}");
        }
        let _ = writeln!(s, "    replicas: {}", v.replicas);
        if let Some(u) = v.user {
            let _ = writeln!(s, "    runAsUser: {u}");
        }
        if let (Some(http), Some(port)) = (v.health, v.ports.first()) {
            let scheme = if http { "http" } else { "tcp" };
            let path = if http { "/healthz" } else { "" };
            let _ = writeln!(s, "    healthEndpoint: {scheme}://localhost:{port}{path}");
        }
        if v.vault {
            let _ = writeln!(s, "    env:\n      SECRET: ${{{{ vault.key_{i} }}}}\n      MIXED: a-${{{{ vault.shared }}}}-b");
        }
        if !v.ports.is_empty() {
            let _ = writeln!(s, "    network:\n      ports:");
            for p in &v.ports {
                let _ = writeln!(s, "        - port: {p}");
            }
            if !v.paths.is_empty() {
                let _ = writeln!(s, "      paths:");
            }
            for (pi, strip) in &v.paths {
                // Prefixes are unique across the landscape (the validator refuses duplicates).
                let path = if route == 0 {
                    "/".to_string()
                } else {
                    format!("/r{route}/")
                };
                route += 1;
                let _ = writeln!(
                    s,
                    "        - port: {}\n          path: {path}\n          stripPath: {strip}",
                    v.ports[pi % v.ports.len()]
                );
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn generated_landscapes_keep_the_invariants(services in prop::collection::vec(svc(), 1..6)) {
        let src = yaml(&services);
        let p = landscape_spec::parse_str("gen.yml", &src);
        prop_assert!(!p.has_errors(), "{src}\n{:?}", p.diagnostics);
        let l = p.landscape.unwrap();
        let opts = options();
        let r = landscape_k8s::render(&l, &opts).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        check_invariants("generated", &l, &opts, &r);
        // One HTTPRoute rule per generated path, no more.
        let rules: usize = r.of_kind("HTTPRoute").map(|o| match o {
            landscape_k8s::Object::HttpRoute(h) => h.spec.rules.len(),
            _ => 0,
        }).sum();
        prop_assert_eq!(rules, services.iter().map(|s| s.paths.len()).sum::<usize>());
        // runAsUser -> securityContext, runAsNonRoot exactly when the uid is not 0.
        for (i, s) in services.iter().enumerate() {
            let sc = container(&r, &format!("svc-{i}")).security_context.clone().unwrap();
            prop_assert_eq!(sc.run_as_user, s.user.map(i64::from));
            prop_assert_eq!(sc.run_as_non_root, s.user.filter(|u| *u != 0).map(|_| true));
        }
        // Scale-to-zero: exactly the services whose paths use one port get an
        // HTTPScaledObject (min 0, max their replicas capped by the plan); every other one
        // a warning at its position. The routes still have one rule per path.
        let opts = landscape_k8s::Options {
            scale_to_zero: Some(landscape_k8s::ScaleToZero::default()),
            ..options()
        };
        let r = landscape_k8s::render(&l, &opts).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        check_invariants("generated keda", &l, &opts, &r);
        let cat = plans();
        for (i, s) in services.iter().enumerate() {
            let name = format!("svc-{i}");
            let used: std::collections::BTreeSet<u16> =
                s.paths.iter().map(|(pi, _)| s.ports[pi % s.ports.len()]).collect();
            let warned = r.warnings.iter().any(|w| {
                w.code == "k8s-not-scaled-to-zero" && w.message.contains(&format!("{name:?}"))
            });
            match r.find("HTTPScaledObject", &name) {
                Some(landscape_k8s::Object::HttpScaledObject(h)) => {
                    prop_assert_eq!(used.len(), 1, "{}", src);
                    prop_assert!(!warned);
                    prop_assert_eq!(h.spec.scale_target_ref.port, *used.iter().next().unwrap());
                    let plan_max = s.plan.and_then(|p| cat.get(p)).map_or(u32::MAX, |p| p.max_replicas);
                    prop_assert_eq!(h.spec.replicas.max as u32, s.replicas.min(plan_max));
                    prop_assert_eq!(h.spec.scaledown_period, Some(300));
                }
                _ => prop_assert!(used.len() != 1 && warned, "{}", src),
            }
        }
        let rules: usize = r.of_kind("HTTPRoute").map(|o| match o {
            landscape_k8s::Object::HttpRoute(h) => h.spec.rules.len(),
            _ => 0,
        }).sum();
        prop_assert_eq!(rules, services.iter().map(|s| s.paths.len()).sum::<usize>());
    }
}
