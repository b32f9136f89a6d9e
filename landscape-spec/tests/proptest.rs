//! Property tests: model -> YAML -> model is the identity; upgrading is idempotent.

mod common;

use indexmap::IndexMap;
use landscape_spec::*;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 ._/-]{0,12}",
        // the characters YAML treats specially, unicode and control characters
        "[a-z:#'\"{}\\[\\],&*!|>%@`\\\\ \\t\\n-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(16).collect()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("0x1F".to_string()),
        Just("- x".to_string()),
        Just("  lead and trail  ".to_string()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,12}"
}

fn reference() -> impl Strategy<Value = Reference> {
    prop_oneof![
        name().prop_map(Reference::Vault),
        Just(Reference::WorkspaceId),
        Just(Reference::WorkspaceDevDomain),
        Just(Reference::TeamId),
        name().prop_map(Reference::WorkspaceEnv),
    ]
}

fn template() -> impl Strategy<Value = Template> {
    vec(
        prop_oneof![
            text().prop_map(Part::Literal),
            reference().prop_map(Part::Ref)
        ],
        0..4,
    )
    // `from_parts` gives the normal form (adjacent literals merged, no empty literals).
    .prop_map(Template::from_parts)
}

fn sp<T>(v: T) -> Spanned<T> {
    Spanned::unspanned(v)
}

fn step() -> impl Strategy<Value = Step> {
    (option::of(text()), text()).prop_map(|(n, c)| Step {
        name: n.map(sp),
        command: sp(c),
    })
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            btree_map(name(), inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn spanned_map<V: std::fmt::Debug>(
    v: impl Strategy<Value = V>,
) -> impl Strategy<Value = IndexMap<String, Spanned<V>>> {
    btree_map(name(), v, 0..3).prop_map(|m| m.into_iter().map(|(k, v)| (k, sp(v))).collect())
}

fn network() -> impl Strategy<Value = Network> {
    (
        vec((1u16..=65535, option::of(any::<bool>())), 0..3),
        vec(
            (
                option::of(1u16..=65535),
                text(),
                option::of(any::<bool>()),
                option::of(template()),
            ),
            0..3,
        ),
        option::of(text()),
        option::of(any::<bool>()),
    )
        .prop_map(|(ports, paths, lp, ls)| Network {
            ports: ports
                .into_iter()
                .map(|(p, i)| PortSpec {
                    port: sp(p),
                    is_public: i.map(sp),
                })
                .collect(),
            paths: paths
                .into_iter()
                .map(|(port, path, s, t)| PathSpec {
                    port: port.map(sp),
                    path: sp(path),
                    strip_path: s.map(sp),
                    target: t.map(sp),
                })
                .collect(),
            legacy_path: lp.map(sp),
            legacy_strip_path: ls.map(sp),
            written: NetworkKeys::default(),
        })
}

fn service() -> impl Strategy<Value = Service> {
    let a = (
        option::of(vec(step(), 0..3)),
        option::of(text()),
        option::of(text()),
        option::of(vec(text(), 0..3)),
        option::of((option::of(text()), option::of(text()), option::of(text()))),
        option::of(prop_oneof![
            any::<u32>().prop_map(|i| Plan::Id(i as u64)),
            (option::of(any::<u32>()), option::of(spanned_map(json()))).prop_map(|(id, p)| {
                Plan::Managed(Box::new(ManagedPlan {
                    id: id.map(|i| sp(i as u64)),
                    parameters: p,
                }))
            }),
        ]),
        option::of(spanned_map(json())),
        option::of(spanned_map(template())),
    );
    let b = (
        option::of(json()),
        option::of(1u32..50),
        option::of(any::<bool>()),
        option::of(text()),
        option::of(btree_map("[A-Za-z_][A-Za-z0-9_.]{0,10}", template(), 0..4)),
        option::of(network()),
        option::of(any::<u32>()),
        option::of(any::<u32>()),
        option::of(vec((text(), text(), option::of(text())), 0..2)),
        option::of(text()),
    );
    (a, b).prop_map(
        |(
            (steps, image, base, cmd, prov, plan, config, secrets),
            (backups, repl, public, health, env, net, uid, gid, vms, sub),
        )| Service {
            name: sp(String::new()),
            steps,
            image: image.map(sp),
            base_image: base.map(sp),
            command: cmd.map(sp),
            provider: prov.map(|(n, v, s)| {
                Box::new(Provider {
                    name: n.map(sp),
                    version: v.map(sp),
                    schema_version: s.map(sp),
                })
            }),
            plan: plan.map(sp),
            config: config.map(Box::new),
            secrets: secrets.map(Box::new),
            backups: backups.map(|b| Box::new(sp(b))),
            replicas: repl.map(sp),
            is_public: public.map(sp),
            health_endpoint: health.map(sp),
            env: env.map(|m| {
                m.into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            EnvVar {
                                value: sp(v),
                                key_span: Span::default(),
                            },
                        )
                    })
                    .collect()
            }),
            network: net,
            run_as_user: uid.map(sp),
            run_as_group: gid.map(sp),
            volume_mounts: vms.map(|v| {
                v.into_iter()
                    .map(|(n, m, w)| VolumeMount {
                        name: sp(n),
                        mount_path: sp(m),
                        workspace_path: w.map(sp),
                    })
                    .collect()
            }),
            mount_sub_path: sub.map(sp),
        },
    )
}

fn landscape() -> impl Strategy<Value = Landscape> {
    let services = btree_map("[a-z][a-z0-9-]{0,8}[a-z0-9]", service(), 0..4).prop_map(|m| {
        Run::Services(
            m.into_iter()
                .map(|(k, mut s)| {
                    s.name = sp(k.clone());
                    (k, s)
                })
                .collect(),
        )
    });
    prop_oneof![
        (vec(step(), 0..3), vec(step(), 0..2), vec(step(), 0..3)).prop_map(|(p, t, r)| Landscape {
            schema_version: sp(SchemaVersion::V0_1),
            prepare: Stage { steps: p },
            test: Stage { steps: t },
            run: Run::Steps(Stage { steps: r }),
        }),
        (
            prop_oneof![
                Just(SchemaVersion::V0_2),
                Just(SchemaVersion::V0_3),
                Just(SchemaVersion::V0_4)
            ],
            vec(step(), 0..3),
            services
        )
            .prop_map(|(v, p, run)| Landscape {
                schema_version: sp(v),
                prepare: Stage { steps: p },
                test: Stage::default(),
                run
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn model_to_yaml_to_model_is_identity(l in landscape()) {
        let yaml = emit::to_yaml(&l);
        let p = parse_str("prop.yml", &yaml);
        let syntax: Vec<_> = p.diagnostics.iter().filter(|d| matches!(d.code, "yaml-syntax" | "wrong-type" | "unknown-key" | "duplicate-key" | "invalid-template")).collect();
        prop_assert!(syntax.is_empty(), "emitted YAML not read cleanly: {:?}\n{}", syntax, yaml);
        let back = p.landscape.clone().expect("a model");
        prop_assert!(back == l, "differs: {}\n{}", common::first_diff(&back, &l), yaml);
    }

    #[test]
    fn fast_path_agrees_with_the_full_reader(l in landscape()) {
        use landscape_spec::yaml::{parse_document_fast, parse_document_full, Limits};
        let yaml = emit::to_yaml(&l);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let fast = parse_document_fast(&yaml, &Limits::default(), &mut a);
        let full = parse_document_full(&yaml, &Limits::default(), &mut b).expect("emitted YAML reads");
        if let Some(fast) = fast {
            prop_assert!(fast.diff(&full).is_none(), "{:?}\n{}", fast.diff(&full), yaml);
        }
    }

    #[test]
    fn fast_path_never_contradicts_the_full_reader_on_noise(bytes in vec(prop_oneof![Just(b' '), Just(b'\n'), Just(b'-'), Just(b':'), Just(b'a'), Just(b'"'), Just(b'\''), Just(b'#'), Just(b'['), Just(b']'), Just(b'{'), Just(b'}'), Just(b','), Just(b'|'), Just(b'>'), Just(b'\\'), Just(b'1'), Just(b'\t')], 0..80)) {
        use landscape_spec::yaml::{parse_document_fast, parse_document_full, Limits};
        let text = String::from_utf8(bytes).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        if let Some(fast) = parse_document_fast(&text, &Limits::default(), &mut a) {
            let full = parse_document_full(&text, &Limits::default(), &mut b);
            prop_assert!(full.is_some(), "fast path accepted what the full reader rejects ({:?}):\n{:?}", b, text);
            let full = full.unwrap();
            prop_assert!(fast.diff(&full).is_none(), "{:?}\n{:?}", fast.diff(&full), text);
        }
    }

    #[test]
    fn upgrade_is_idempotent(l in landscape()) {
        let once = upgrade(&l);
        let twice = upgrade(&once.landscape);
        prop_assert!(twice.changes.is_empty(), "second upgrade changed {:?}", twice.changes);
        prop_assert!(twice.landscape == once.landscape);
        prop_assert_eq!(once.landscape.schema_version.value, SchemaVersion::LATEST);
    }

    #[test]
    fn templates_round_trip_through_source(t in template()) {
        let back = Template::parse(&t.to_source());
        prop_assert_eq!(back, Ok(t));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        let _ = parse_bytes("fuzz.yml", &bytes);
    }
}
