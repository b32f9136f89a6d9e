//! Resolution over the 28 real ci.yml files of ../shared/corpus/codesphere-ci.

mod common;

use common::*;
use landscape_spec::Reference;
use landscape_vault::{resolve, Context, ProblemKind, ResolveError, SecretValue, Vault};
use std::collections::BTreeSet;
use std::path::PathBuf;

#[tokio::test]
async fn every_vault_reference_of_the_corpus_is_reported_then_resolved() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/codesphere-ci");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "SKIP: no corpus at {} (the checkout has no ../shared beside it)",
            dir.display()
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let vault = Vault::new(key_backend(&tmp.path().join("v")));
    let mut files = 0;
    let mut refs_total = 0;
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    paths.sort();
    for path in paths {
        let src = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // Parse on a thread so a parser that never returns fails this test by name instead
        // of hanging the whole suite.
        let (tx, rx) = std::sync::mpsc::channel();
        let (n2, s2) = (name.clone(), src.clone());
        std::thread::spawn(move || {
            let _ = tx.send(landscape_spec::parse_str(&n2, &s2).landscape);
        });
        let parsed = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("landscape_spec::parse_str({name}) did not return within 60 s")
            });
        let Some(l) = parsed else { continue };
        files += 1;
        let scope = format!("f{files}");
        // The references as the model holds them.
        let mut vault_refs = 0;
        let mut names = BTreeSet::new();
        let mut ctx = Context::new(scope.clone());
        ctx.workspace_id = Some("4711".into());
        ctx.dev_domain = Some("4711-3000.dev.example".into());
        ctx.team_id = Some("42".into());
        for s in l.services() {
            let templates = s
                .env()
                .map(|(_, e)| &e.value)
                .chain(s.secrets.iter().flat_map(|m| m.values()));
            for t in templates {
                for r in t.references() {
                    match r {
                        Reference::Vault(n) => {
                            vault_refs += 1;
                            names.insert(n.clone());
                        }
                        Reference::WorkspaceEnv(k) => {
                            ctx.workspace_env.insert(k.clone(), format!("env-{k}"));
                        }
                        _ => {}
                    }
                }
            }
        }
        refs_total += vault_refs;
        match resolve(&vault, &name, &l, &ctx).await {
            Ok(_) => assert_eq!(
                vault_refs, 0,
                "{name}: resolved although secrets are missing"
            ),
            Err(ResolveError::Problems(mut p)) => {
                assert_eq!(
                    p.len(),
                    vault_refs,
                    "{name}: one problem per vault reference"
                );
                assert!(
                    p.iter().all(|p| p.kind == ProblemKind::Missing),
                    "{name}: {p:?}"
                );
                landscape_vault::resolve::refine_positions(&mut p, &src);
                for p in &p {
                    let line = src.lines().nth(p.span.start.line as usize - 1).unwrap();
                    let at: String = line.chars().skip(p.span.start.col as usize - 1).collect();
                    assert!(
                        at.starts_with("${{") && at.contains("vault"),
                        "{name}:{}: points at {at:?}",
                        p.span.start.line
                    );
                }
            }
            Err(ResolveError::Vault(e)) => panic!("{name}: {e}"),
        }
        for n in &names {
            vault
                .put(
                    &scope,
                    n,
                    SecretValue::from(format!("secret-of-{n}").as_str()),
                    None,
                )
                .await
                .unwrap();
        }
        let r = resolve(&vault, &name, &l, &ctx)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rendered = r
            .services
            .iter()
            .flat_map(|s| s.vars.iter().chain(s.secrets.iter()))
            .filter(|(_, v)| v.expose_str().is_some_and(|v| v.contains("secret-of-")));
        assert!(
            rendered.count() >= names.len(),
            "{name}: vault values were not rendered"
        );
        assert_eq!(
            r.uses
                .iter()
                .map(|u| u.name.clone())
                .collect::<BTreeSet<_>>(),
            names,
            "{name}"
        );
    }
    assert!(files >= 20, "only {files} corpus files parsed");
    assert!(
        refs_total >= 10,
        "the corpus has vault references ({refs_total})"
    );
    eprintln!("{files} files, {refs_total} vault references");
}
