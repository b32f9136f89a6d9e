//! `landscape vault` end to end, in-process through `landscape_vault::cli::run` (the example
//! binary is exercised by scripts/test.d/vault.sh).

use landscape_vault::cli::{self, Command, Io, Options};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

struct Out {
    code: u8,
    stdout: String,
    stderr: String,
}

struct Cli {
    root: PathBuf,
    env: HashMap<String, String>,
    opts: Options,
}

impl Cli {
    fn new(dir: &Path) -> Cli {
        let mut env = HashMap::new();
        env.insert("LANDSCAPE_VAULT_KDF".to_string(), "256,1,1".to_string());
        env.insert("USER".to_string(), "alice".to_string());
        let opts = Options {
            store: Some(dir.join("store")),
            scope: Some("team".into()),
            ..Default::default()
        };
        Cli {
            root: dir.to_path_buf(),
            env,
            opts,
        }
    }
    fn run_in(&self, cmd: Command, stdin: &[u8]) -> Out {
        let mut input = stdin;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let env = |k: &str| self.env.get(k).cloned();
        let mut io = Io {
            stdin: &mut input,
            stdout: &mut out,
            stderr: &mut err,
            env: &env,
        };
        let code = cli::run(&self.opts, &cmd, &mut io);
        Out {
            code,
            stdout: String::from_utf8(out).unwrap(),
            stderr: String::from_utf8(err).unwrap(),
        }
    }
    fn run(&self, cmd: Command) -> Out {
        self.run_in(cmd, b"")
    }
    fn set(&self, name: &str, value: &str) -> Out {
        self.run_in(
            Command::Set {
                name: name.into(),
                cas: None,
            },
            value.as_bytes(),
        )
    }
    fn get(&self, name: &str) -> Out {
        self.run(Command::Get {
            name: name.into(),
            version: None,
        })
    }
    fn store_file(&self) -> PathBuf {
        self.root.join("store/team/store.lv")
    }
}

const PW: &str = "s3cr3t-Pa55word-for-db";

#[test]
fn set_get_list_rm_with_a_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cli::new(tmp.path());
    c.env.insert(
        "LANDSCAPE_VAULT_PASSPHRASE".into(),
        "pass phrase one".into(),
    );

    let o = c.set("dbPassword", &format!("{PW}\n"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("version 1"));
    let o = c.get("dbPassword");
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, format!("{PW}\n").as_str()),
        "{}",
        o.stderr
    );

    let o = c.run_in(
        Command::Set {
            name: "dbPassword".into(),
            cas: Some(0),
        },
        b"another-value-1",
    );
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is at version 1, not 0"), "{}", o.stderr);
    assert_eq!(
        c.run_in(
            Command::Set {
                name: "dbPassword".into(),
                cas: Some(1)
            },
            b"second-value"
        )
        .code,
        0
    );
    let o = c.run(Command::Get {
        name: "dbPassword".into(),
        version: Some(1),
    });
    assert_eq!(o.stdout, format!("{PW}\n"));

    let o = c.set("short", "abc");
    assert_eq!(o.code, 0);
    assert!(
        o.stderr.contains("warning") && o.stderr.contains("not be masked"),
        "{}",
        o.stderr
    );

    let o = c.run(Command::List);
    assert_eq!(o.code, 0);
    assert!(
        o.stdout.contains("dbPassword\tversion 2\tkept 1,2"),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains(PW) && !o.stdout.contains("second-value"));

    assert_eq!(
        c.run(Command::Rm {
            name: "short".into()
        })
        .code,
        0
    );
    let o = c.run(Command::Rm {
        name: "short".into(),
    });
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not found"));
    let o = c.get("short");
    assert_eq!(o.code, 1);

    // Empty values and bad names are usage errors.
    assert_eq!(c.set("empty", "\n").code, 2);
    let o = c.set("../x", "value-123456");
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("invalid secret name"));
}

#[test]
fn key_errors_missing_corrupted_tampered_and_locked_stores_are_told_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cli::new(tmp.path());
    // No key at all.
    let o = c.get("x");
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no master key"), "{}", o.stderr);

    let key = tmp.path().join("k");
    fs::write(&key, [7u8; 32]).unwrap();
    c.opts.key_file = Some(key.clone());
    let o = c.get("x");
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("no store for scope \"team\""),
        "{}",
        o.stderr
    );

    assert_eq!(c.set("db", PW).code, 0);
    let other = tmp.path().join("k2");
    fs::write(&other, [8u8; 32]).unwrap();
    c.opts.key_file = Some(other);
    let o = c.get("db");
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("wrong passphrase or key file"),
        "{}",
        o.stderr
    );
    c.opts.key_file = Some(key);

    // Locked by another writer.
    c.env
        .insert("LANDSCAPE_VAULT_LOCK_TIMEOUT_MS".into(), "100".into());
    let lock = fs::File::open(tmp.path().join("store/team/store.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let o = c.set("db", "new-value-123");
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("locked by another writer"),
        "{}",
        o.stderr
    );
    drop(lock);

    // Corrupted (a flipped byte) versus tampered (valid checksum, wrong MAC).
    let good = fs::read(c.store_file()).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 3] ^= 0x20;
    fs::write(c.store_file(), &bad).unwrap();
    let o = c.get("db");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is corrupted"), "{}", o.stderr);

    let text = String::from_utf8(good.clone()).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut body: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    body["generation"] = serde_json::json!(body["generation"].as_u64().unwrap() + 7);
    lines[1] = serde_json::to_string(&body).unwrap();
    use sha2::Digest;
    let head = format!("{}\n{}\n", lines[0], lines[1]);
    let sum = hex::encode(sha2::Sha256::digest(head.as_bytes()));
    fs::write(c.store_file(), format!("{head}sha256={sum}\n")).unwrap();
    let o = c.get("db");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("was tampered with"), "{}", o.stderr);
    assert!(!o.stderr.contains(PW));
}

#[test]
fn rotate_keys_and_verify_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cli::new(tmp.path());
    c.env
        .insert("LANDSCAPE_VAULT_PASSPHRASE".into(), "old pass".into());
    assert_eq!(c.set("db", PW).code, 0);
    assert_eq!(c.get("db").code, 0);

    let o = c.run(Command::RotateKey { new_key_file: None });
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("rotated the data key"));
    assert_eq!(c.get("db").stdout, format!("{PW}\n"));

    // To a new passphrase.
    c.env
        .insert("LANDSCAPE_VAULT_NEW_PASSPHRASE".into(), "new pass".into());
    let o = c.run(Command::RotateKey { new_key_file: None });
    assert_eq!(o.code, 0, "{}", o.stderr);
    c.env.remove("LANDSCAPE_VAULT_NEW_PASSPHRASE");
    assert_eq!(
        c.get("db").code,
        2,
        "the old passphrase must no longer work"
    );
    c.env
        .insert("LANDSCAPE_VAULT_PASSPHRASE".into(), "new pass".into());
    assert_eq!(c.get("db").stdout, format!("{PW}\n"));

    // To a freshly generated key file.
    let key = tmp.path().join("new.key");
    let o = c.run(Command::RotateKey {
        new_key_file: Some(key.clone()),
    });
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(fs::metadata(&key).unwrap().len(), 32);
    c.env.remove("LANDSCAPE_VAULT_PASSPHRASE");
    c.opts.key_file = Some(key);
    assert_eq!(c.get("db").stdout, format!("{PW}\n"));

    let o = c.run(Command::AuditVerify);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("chain intact"), "{}", o.stdout);
    let log = fs::read_to_string(tmp.path().join("store/team/audit.jsonl")).unwrap();
    assert!(log.contains("\"action\":\"rotate\"") && log.contains("\"actor\":\"alice\""));
    assert!(!log.contains(PW));

    // Change one field of one line: detected, with the line number.
    let tampered = log.replacen("\"actor\":\"alice\"", "\"actor\":\"mallory\"", 1);
    fs::write(tmp.path().join("store/team/audit.jsonl"), tampered).unwrap();
    let o = c.run(Command::AuditVerify);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("line 1: the MAC does not match"),
        "{}",
        o.stderr
    );
}

#[test]
fn check_reports_every_unresolved_reference_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cli::new(tmp.path());
    c.env
        .insert("LANDSCAPE_VAULT_PASSPHRASE".into(), "pp".into());
    let ci = tmp.path().join("ci.yml");
    fs::write(
        &ci,
        "schemaVersion: v0.2\n\
         run:\n\
         \x20 web:\n\
         \x20   plan: 21\n\
         \x20   steps:\n\
         \x20     - command: npm start\n\
         \x20   env:\n\
         \x20     DB_PASSWORD: ${{ vault.dbPassword }}\n\
         \x20     API_URL: \"https://${{ workspace.devDomain }}/x?k=${{ vault['api-key'] }}\"\n\
         \x20     PLAIN: hello\n\
         \x20 worker:\n\
         \x20   plan: 21\n\
         \x20   steps:\n\
         \x20     - command: ./work\n\
         \x20   env:\n\
         \x20     TOKEN: ${{ vault.workerToken }}\n",
    )
    .unwrap();
    assert_eq!(c.set("dbPassword", PW).code, 0);
    let o = c.run(Command::Check { file: ci.clone() });
    assert_eq!(o.code, 1, "{}", o.stderr);
    let name = ci.display().to_string();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", o.stdout);
    assert!(
        lines[0].starts_with(&format!(
            "{name}:9:56: service \"web\" env API_URL: vault secret \"api-key\""
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!(
            "{name}:16:14: service \"worker\" env TOKEN: vault secret \"workerToken\""
        )),
        "{}",
        lines[1]
    );
    assert!(o.stderr.contains("2 unresolved"));
    assert!(!o.stdout.contains(PW) && !o.stderr.contains(PW));

    assert_eq!(c.set("api-key", "api-key-value-1").code, 0);
    // A shared scope supplies the last one, but only once it is assigned.
    c.opts.scope = Some("shared".into());
    assert_eq!(c.set("workerToken", "worker-token-value").code, 0);
    c.opts.scope = Some("team".into());
    assert_eq!(c.run(Command::Check { file: ci.clone() }).code, 1);
    c.opts.shared = vec!["shared".into()];
    let o = c.run(Command::Check { file: ci.clone() });
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("all 3 vault reference(s) resolve"),
        "{}",
        o.stderr
    );

    // Unreadable input.
    let o = c.run(Command::Check {
        file: tmp.path().join("nope.yml"),
    });
    assert_eq!(o.code, 2);
}

#[test]
fn audit_verify_reports_a_rolled_back_store() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cli::new(tmp.path());
    c.env
        .insert("LANDSCAPE_VAULT_PASSPHRASE".into(), "pp".into());
    assert_eq!(c.set("db", "first-value-1").code, 0);
    let old = fs::read(c.store_file()).unwrap();
    assert_eq!(c.set("db", "second-value-2").code, 0);
    fs::write(c.store_file(), old).unwrap();
    assert_eq!(
        c.get("db").stdout,
        "first-value-1\n",
        "the old copy is authentic on its own"
    );
    let o = c.run(Command::AuditVerify);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stderr.contains("rolled back"), "{}", o.stderr);
}

#[test]
fn the_first_set_creates_the_default_key_file_which_every_later_command_uses() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cli::new(tmp.path());
    c.env.insert(
        "XDG_DATA_HOME".into(),
        tmp.path().join("data").display().to_string(),
    );
    let key = tmp.path().join("data/landscape/vault.key");
    // Reading makes nothing, and says how to start.
    let o = c.get("db");
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("landscape vault set NAME")
            && o.stderr.contains(&key.display().to_string()),
        "{}",
        o.stderr
    );
    assert!(!key.exists());
    // The first set creates it (32 random bytes, 0600, in a 0700 directory) and says so.
    let o = c.set("db", PW);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr
            .contains(&format!("created the key file {}", key.display())),
        "{}",
        o.stderr
    );
    let meta = fs::metadata(&key).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(key.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let first = fs::read(&key).unwrap();
    // Later commands use it, and a second set keeps it.
    assert_eq!(c.get("db").stdout.trim_end(), PW);
    assert_eq!(c.set("other", "value-two-2").code, 0);
    assert_eq!(fs::read(&key).unwrap(), first);
    assert!(c.run(Command::List).stdout.contains("other"));
    // A passphrase, when set, is the master key instead (this store is not under it).
    c.env
        .insert("LANDSCAPE_VAULT_PASSPHRASE".into(), "another one".into());
    let o = c.get("db");
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("wrong passphrase or key file"),
        "{}",
        o.stderr
    );
}

#[test]
fn no_key_file_is_made_for_a_store_that_exists_under_another_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cli::new(tmp.path());
    c.env.insert(
        "LANDSCAPE_VAULT_PASSPHRASE".into(),
        "the team's phrase".into(),
    );
    assert_eq!(c.set("db", PW).code, 0);
    // The passphrase is not set in this shell: `set` says so and makes no key file.
    c.env.remove("LANDSCAPE_VAULT_PASSPHRASE");
    c.env.insert(
        "XDG_DATA_HOME".into(),
        tmp.path().join("data").display().to_string(),
    );
    let o = c.set("db", "another-value-1");
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no master key"), "{}", o.stderr);
    assert!(!tmp.path().join("data/landscape/vault.key").exists());
}
