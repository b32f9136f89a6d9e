//! The Vault facade: scopes and sharing, change events, resolution of a parsed landscape, audit.

mod common;

use common::*;
use landscape_vault::{
    resolve, AccessPolicy, AuditLog, ChangeKind, Context, Error, ProblemKind, ResolveError,
    SecretValue, Vault,
};
use std::fs;

fn vault(dir: &std::path::Path) -> (Vault, landscape_vault::FileBackend) {
    let b = key_backend(&dir.join("v"));
    (Vault::new(b.clone()).with_actor("host"), b)
}

#[tokio::test]
async fn scopes_see_their_own_and_explicitly_shared_secrets_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (v, _) = vault(tmp.path());
    v.put("team-a", "db", SecretValue::from("team-a-db-value"), None)
        .await
        .unwrap();
    v.put("team-b", "db", SecretValue::from("team-b-db-value"), None)
        .await
        .unwrap();
    v.put(
        "shared",
        "smtp",
        SecretValue::from("shared-smtp-value"),
        None,
    )
    .await
    .unwrap();
    v.put("shared", "db", SecretValue::from("shared-db-value"), None)
        .await
        .unwrap();

    // Deny by default.
    assert!(matches!(
        v.get("team-a", "smtp").await.unwrap_err(),
        Error::NotFound { .. }
    ));
    let err = v.get("team-a", "team-b/db").await.unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    assert!(err.to_string().contains("may not read"));
    assert!(matches!(
        v.get("team-a", "shared/smtp").await.unwrap_err(),
        Error::Denied { .. }
    ));

    let v = v.with_policy(AccessPolicy::new().share("team-a", "shared"));
    let f = v.lookup("team-a", "smtp").await.unwrap();
    assert_eq!(
        (f.owner.as_str(), f.value.expose_str()),
        ("shared", Some("shared-smtp-value"))
    );
    // The own scope wins over the shared one.
    assert_eq!(
        v.get("team-a", "db").await.unwrap().expose_str(),
        Some("team-a-db-value")
    );
    assert_eq!(
        v.get("team-a", "shared/db").await.unwrap().expose_str(),
        Some("shared-db-value")
    );
    // Sharing is not symmetric and not transitive.
    assert!(matches!(
        v.get("team-b", "smtp").await.unwrap_err(),
        Error::NotFound { .. }
    ));
    assert!(matches!(
        v.get("shared", "team-a/db").await.unwrap_err(),
        Error::Denied { .. }
    ));
    // Listing shows names and metadata only.
    let names: Vec<String> = v
        .list("shared")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["db", "smtp"]);
}

#[tokio::test]
async fn change_events_for_new_versions_and_deletions() {
    let tmp = tempfile::tempdir().unwrap();
    let (v, _) = vault(tmp.path());
    let mut rx = v.subscribe();
    v.put("s", "db", SecretValue::from("first-value-1"), None)
        .await
        .unwrap();
    v.put("s", "db", SecretValue::from("second-value-2"), Some(1))
        .await
        .unwrap();
    assert!(v
        .put("s", "db", SecretValue::from("third-value-3"), Some(1))
        .await
        .is_err());
    v.delete("s", "db").await.unwrap();
    let got: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap()).collect();
    assert_eq!(
        got.iter().map(|c| (c.version, c.kind)).collect::<Vec<_>>(),
        [
            (Some(1), ChangeKind::Set),
            (Some(2), ChangeKind::Set),
            (None, ChangeKind::Deleted)
        ]
    );
    assert!(
        rx.try_recv().is_err(),
        "a failed check-and-set must not announce a change"
    );
}

const CI: &str = "schemaVersion: v0.4
run:
  web:
    plan: 21
    steps:
      - command: npm start
    env:
      DB_URL: postgres://app:${{ vault['db-pass'] }}@db-${{ workspace.id }}:5432/app
      TEAM: ${{ team.id }}
      SMTP: ${{ vault.smtp }}
      HOST: ${{ workspace.devDomain }}
      MODE: ${{ workspace.env['MODE'] }}
  api:
    plan: 21
    steps:
      - command: ./api
    env:
      KEY: ${{ vault.apiKey }}
      OTHER: ${{ vault['other-team/x'] }}
      PLAIN: \"1\"
";

#[tokio::test]
async fn resolution_renders_env_or_lists_every_problem_with_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let (v, b) = vault(tmp.path());
    let parsed = landscape_spec::parse_str("ci.yml", CI);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    let l = parsed.landscape.unwrap();
    let mut ctx = Context::new("team-1");
    ctx.workspace_id = Some("4711".into());
    ctx.team_id = Some("42".into());

    v.put(
        "team-1",
        "db-pass",
        SecretValue::from("pg-secret-value"),
        None,
    )
    .await
    .unwrap();
    let Err(ResolveError::Problems(p)) = resolve(&v, "ci.yml", &l, &ctx).await else {
        panic!("expected problems")
    };
    let summary: Vec<(String, ProblemKind, u32)> = p
        .iter()
        .map(|p| (p.key.clone(), p.kind.clone(), p.span.start.line))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("SMTP".into(), ProblemKind::Missing, 10),
            ("HOST".into(), ProblemKind::Unset, 11),
            ("MODE".into(), ProblemKind::Unset, 12),
            ("KEY".into(), ProblemKind::Missing, 18),
            ("OTHER".into(), ProblemKind::Denied, 19),
        ]
    );
    assert_eq!(p[0].to_string(), format!("ci.yml:10:13: {}", p[0].message));
    assert!(
        p[3].message.contains("service \"api\" env KEY") && p[3].message.contains("\"apiKey\"")
    );
    assert!(p.iter().all(|p| !p.message.contains("pg-secret-value")));

    v.put("team-1", "smtp", SecretValue::from("smtp-value-1"), None)
        .await
        .unwrap();
    v.put(
        "team-1",
        "apiKey",
        SecretValue::from("api-key-value-1"),
        None,
    )
    .await
    .unwrap();
    v.put("other-team", "x", SecretValue::from("other-x-value"), None)
        .await
        .unwrap();
    ctx.dev_domain = Some("4711-3000.dev.example".into());
    ctx.workspace_env.insert("MODE".into(), "prod".into());
    let v = v.with_policy(AccessPolicy::new().share("team-1", "other-team"));
    let r = resolve(&v, "ci.yml", &l, &ctx).await.unwrap();
    let web = r.service("web").unwrap();
    let env: Vec<(&str, &str)> = web
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_str().unwrap()))
        .collect();
    assert_eq!(
        env,
        vec![
            ("DB_URL", "postgres://app:pg-secret-value@db-4711:5432/app"),
            ("TEAM", "42"),
            ("SMTP", "smtp-value-1"),
            ("HOST", "4711-3000.dev.example"),
            ("MODE", "prod"),
        ]
    );
    let api = r.service("api").unwrap();
    assert_eq!(api.vars[1].1.expose_str(), Some("other-x-value"));
    assert_eq!(api.vars[2].1.expose_str(), Some("1"));
    // Debug of the result shows names, never values.
    let dbg = format!("{r:?}");
    assert!(
        dbg.contains("DB_URL") && !dbg.contains("pg-secret-value") && !dbg.contains("smtp-value-1")
    );

    // A change maps to the services to restart.
    let mut rx = v.subscribe();
    v.put("team-1", "smtp", SecretValue::from("smtp-value-2"), Some(1))
        .await
        .unwrap();
    assert_eq!(r.services_using(&rx.recv().await.unwrap()), vec!["web"]);
    v.put(
        "other-team",
        "x",
        SecretValue::from("other-x-value-2"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.services_using(&rx.recv().await.unwrap()), vec!["api"]);

    // Resolutions are audited (without values).
    let log = fs::read_to_string(b.audit_path("team-1")).unwrap();
    assert!(log.contains("\"action\":\"resolve\"") && log.contains("5 unresolved"));
    assert!(!log.contains("pg-secret-value"));
    assert!(
        AuditLog::for_scope(&b, "team-1")
            .unwrap()
            .verify()
            .unwrap()
            .lines
            >= 8
    );
}

#[tokio::test]
async fn audit_chain_detects_edits_removals_and_reordering() {
    let tmp = tempfile::tempdir().unwrap();
    let (v, b) = vault(tmp.path());
    for i in 0..5 {
        v.put(
            "s",
            "k",
            SecretValue::from(format!("value-number-{i}").as_str()),
            None,
        )
        .await
        .unwrap();
    }
    v.get("s", "k").await.unwrap();
    let _ = v.get("s", "missing").await;
    let log = AuditLog::for_scope(&b, "s").unwrap();
    assert_eq!(log.verify().unwrap().lines, 7);
    let good = fs::read_to_string(log.path()).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    assert!(lines[6].contains("\"result\":\"not-found\""));

    let check = |text: String, line: u64| {
        fs::write(log.path(), text).unwrap();
        match log.verify().unwrap_err() {
            Error::AuditTampered { line: l, .. } => assert_eq!(l, line),
            e => panic!("{e}"),
        }
    };
    // Edit a field.
    check(good.replacen("\"version\":3", "\"version\":9", 1), 3);
    // Remove a line in the middle.
    let mut removed = lines.clone();
    removed.remove(2);
    check(removed.join("\n") + "\n", 3);
    // Swap two lines.
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    check(swapped.join("\n") + "\n", 2);
    // A forged line appended with a made-up MAC.
    let forged = lines[6].replace("\"seq\":7", "\"seq\":8");
    check(format!("{good}{forged}\n"), 8);

    // A different store key cannot verify (or extend) the chain.
    fs::write(log.path(), &good).unwrap();
    let other =
        landscape_vault::FileBackend::new(tmp.path().join("w"), common::test_key()).unwrap();
    other
        .put_sync("s", "k", &SecretValue::from("another-store"), None)
        .unwrap();
    let foreign = AuditLog::open(log.path(), "s", [0u8; 32]);
    assert!(foreign.verify().is_err());
    // The chain survives a data-key rotation (the audit key is kept).
    b.rotate_data_key_sync("s").unwrap();
    v.get("s", "k").await.unwrap();
    assert_eq!(
        AuditLog::for_scope(&b, "s")
            .unwrap()
            .verify()
            .unwrap()
            .lines,
        8
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_announces_changes_made_by_other_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let (v, _) = vault(tmp.path());
    v.put("s", "db", SecretValue::from("first-value-1"), None)
        .await
        .unwrap();
    v.put("s", "gone", SecretValue::from("soon-deleted-1"), None)
        .await
        .unwrap();
    let mut rx = v.subscribe();
    let watcher = v
        .watch(
            vec!["s".into(), "empty".into()],
            std::time::Duration::from_millis(20),
        )
        .await
        .unwrap();
    // Another writer (another backend on the same directory, as another process would be).
    let other = key_backend(&tmp.path().join("v"));
    other
        .put_sync("s", "db", &SecretValue::from("second-value-2"), Some(1))
        .unwrap();
    other.delete_sync("s", "gone").unwrap();
    other
        .put_sync("empty", "new", &SecretValue::from("brand-new-value"), None)
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while got.len() < 3 {
        let c = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("change events within 20 s")
            .unwrap();
        got.push((c.scope, c.name, c.version, c.kind));
    }
    watcher.abort();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("empty".into(), "new".into(), Some(1), ChangeKind::Set),
            ("s".into(), "db".into(), Some(2), ChangeKind::Set),
            ("s".into(), "gone".into(), None, ChangeKind::Deleted),
        ]
    );
}

#[tokio::test]
async fn a_whole_store_rollback_is_caught_against_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (v, b) = vault(tmp.path());
    v.put("s", "db", SecretValue::from("old-password-1"), None)
        .await
        .unwrap();
    let old_copy = fs::read(b.store_path("s")).unwrap();
    v.put("s", "db", SecretValue::from("new-password-2"), Some(1))
        .await
        .unwrap();
    v.put("s", "api", SecretValue::from("api-key-value-3"), None)
        .await
        .unwrap();
    let report = b.verify_audit("s").unwrap();
    assert_eq!((report.lines, report.max_generation), (2 + 1, Some(3)));

    // Someone puts the older (authentic, validly sealed) store file back.
    fs::write(b.store_path("s"), &old_copy).unwrap();
    assert_eq!(
        b.verify_sync("s").unwrap(),
        1,
        "the old file is internally consistent"
    );
    let err = b.verify_audit("s").unwrap_err();
    assert!(matches!(err, Error::Tampered { .. }), "{err}");
    assert!(
        err.to_string().contains("rolled back") && err.to_string().contains("generation 1"),
        "{err}"
    );
}
