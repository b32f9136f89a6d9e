//! The embedded store: round trips, keys, tamper and damage detection, locking, rotation, leaks.

mod common;

use common::*;
use landscape_vault::{Error, FileBackend, FileOptions, MasterKey, SecretValue, Vault};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const SECRET_A: &str = "Tr0ub4dor&3-alpha-VALUE";
const SECRET_B: &str = "correct-horse-battery-BETA";

#[test]
fn round_trip_versions_and_cas() {
    let tmp = tempfile::tempdir().unwrap();
    let b = key_backend(&tmp.path().join("v"));
    assert_eq!(
        b.put_sync("team", "db", &SecretValue::from(SECRET_A), Some(0))
            .unwrap(),
        1
    );
    assert_eq!(
        b.put_sync("team", "db", &SecretValue::from(SECRET_B), Some(1))
            .unwrap(),
        2
    );
    let err = b
        .put_sync("team", "db", &SecretValue::from("whatever-1"), Some(1))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 1,
                current: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = b
        .put_sync("team", "db", &SecretValue::from("whatever-1"), Some(0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 0,
                current: 2,
                ..
            }
        ),
        "{err}"
    );

    // A fresh backend (another process, in effect) reads the same values.
    let b2 = key_backend(&tmp.path().join("v"));
    let cur = b2.get_sync("team", "db", None).unwrap().unwrap();
    assert_eq!((cur.version, cur.value.expose()), (2, SECRET_B.as_bytes()));
    assert_eq!(
        b2.get_sync("team", "db", Some(1))
            .unwrap()
            .unwrap()
            .value
            .expose(),
        SECRET_A.as_bytes()
    );
    assert!(b2.get_sync("team", "nope", None).unwrap().is_none());

    let list = b2.list_sync("team").unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].name.as_str(),
            list[0].version,
            list[0].versions.clone()
        ),
        ("db", 2, vec![1, 2])
    );

    assert!(b2.delete_sync("team", "db").unwrap());
    assert!(!b2.delete_sync("team", "db").unwrap());
    assert!(b2.get_sync("team", "db", None).unwrap().is_none());
    assert!(b2.list_sync("team").unwrap().is_empty());

    // Scopes are separate stores.
    b2.put_sync("other", "db", &SecretValue::from(SECRET_A), None)
        .unwrap();
    assert!(b2.get_sync("team", "db", None).unwrap().is_none());
    b2.purge_scope_sync("other").unwrap();
    assert!(matches!(
        b2.list_sync("other").unwrap_err(),
        Error::StoreMissing { .. }
    ));
}

#[test]
fn store_files_are_private_and_no_temp_files_remain() {
    let tmp = tempfile::tempdir().unwrap();
    let b = key_backend(&tmp.path().join("v"));
    b.put_sync("team", "db", &SecretValue::from(SECRET_A), None)
        .unwrap();
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&b.store_path("team")), 0o600);
    assert_eq!(mode(&b.scope_dir("team")), 0o700);
    let names: Vec<String> = fs::read_dir(b.scope_dir("team"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".store.lv.tmp")),
        "temp files left: {names:?}"
    );
}

#[test]
fn wrong_key_and_wrong_passphrase_are_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("v");
    key_backend(&root)
        .put_sync("s", "db", &SecretValue::from(SECRET_A), None)
        .unwrap();
    let other = FileBackend::new(&root, MasterKey::Key(zeroize::Zeroizing::new([1; 32]))).unwrap();
    assert!(matches!(
        other.get_sync("s", "db", None).unwrap_err(),
        Error::WrongKey { .. }
    ));
    // A passphrase where a key file was used is also "wrong key".
    let pass = FileBackend::with_options(
        &root,
        MasterKey::passphrase("pw-123456".into()),
        cheap_kdf(),
    )
    .unwrap();
    assert!(matches!(
        pass.list_sync("s").unwrap_err(),
        Error::WrongKey { .. }
    ));

    let root2 = tmp.path().join("p");
    let right = FileBackend::with_options(
        &root2,
        MasterKey::passphrase("right horse".into()),
        cheap_kdf(),
    )
    .unwrap();
    right
        .put_sync("s", "db", &SecretValue::from(SECRET_A), None)
        .unwrap();
    let wrong = FileBackend::with_options(
        &root2,
        MasterKey::passphrase("wrong horse".into()),
        cheap_kdf(),
    )
    .unwrap();
    let err = wrong.get_sync("s", "db", None).unwrap_err();
    assert!(matches!(err, Error::WrongKey { .. }));
    assert!(
        err.to_string().contains("wrong passphrase or key file"),
        "{err}"
    );
    assert!(!err.to_string().contains("horse"));
    let again = FileBackend::with_options(
        &root2,
        MasterKey::passphrase("right horse".into()),
        cheap_kdf(),
    )
    .unwrap();
    assert_eq!(
        again
            .get_sync("s", "db", None)
            .unwrap()
            .unwrap()
            .value
            .expose(),
        SECRET_A.as_bytes()
    );
}

/// Every single flipped byte (and every truncation) of the store file is detected.
#[test]
fn every_flipped_byte_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let b = key_backend(&tmp.path().join("v"));
    b.put_sync("s", "a", &SecretValue::from(SECRET_A), None)
        .unwrap();
    b.put_sync("s", "b", &SecretValue::from(SECRET_B), None)
        .unwrap();
    let path = b.store_path("s");
    let good = fs::read(&path).unwrap();
    assert!(good.len() > 500);
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            fs::write(&path, &bad).unwrap();
            let err = b
                .verify_sync("s")
                .expect_err(&format!("flip {flip:#x} at byte {i} not detected"));
            assert!(matches!(err, Error::Corrupted { .. }), "byte {i}: {err}");
        }
    }
    for cut in [1, good.len() / 2, good.len() - 1] {
        fs::write(&path, &good[..cut]).unwrap();
        assert!(
            matches!(b.verify_sync("s").unwrap_err(), Error::Corrupted { .. }),
            "truncated to {cut}"
        );
    }
    fs::write(&path, &good).unwrap();
    assert_eq!(b.verify_sync("s").unwrap(), 2);
}

/// Re-checksums a store body after an edit, as an attacker who knows the format would.
fn reseal_checksum(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    use sha2::{Digest, Sha256};
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let magic = lines.next().unwrap();
    let mut body: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    edit(&mut body);
    let head = format!("{magic}\n{}\n", serde_json::to_string(&body).unwrap());
    let sum = hex::encode(Sha256::digest(head.as_bytes()));
    fs::write(path, format!("{head}sha256={sum}\n")).unwrap();
}

#[test]
fn swapped_removed_and_rolled_back_entries_are_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let b = key_backend(&tmp.path().join("v"));
    b.put_sync("s", "alpha", &SecretValue::from(SECRET_A), None)
        .unwrap();
    b.put_sync("s", "beta", &SecretValue::from(SECRET_B), None)
        .unwrap();
    let path = b.store_path("s");
    let good = fs::read(&path).unwrap();

    // Swap the ciphertexts of two names.
    reseal_checksum(&path, |v| {
        let a = v["secrets"]["alpha"]["versions"][0].clone();
        let bb = v["secrets"]["beta"]["versions"][0].clone();
        for f in ["nonce", "ct"] {
            v["secrets"]["alpha"]["versions"][0][f] = bb[f].clone();
            v["secrets"]["beta"]["versions"][0][f] = a[f].clone();
        }
    });
    let err = b.get_sync("s", "alpha", None).unwrap_err();
    assert!(matches!(err, Error::Tampered { .. }), "{err}");

    // Remove an entry.
    fs::write(&path, &good).unwrap();
    reseal_checksum(&path, |v| {
        v["secrets"].as_object_mut().unwrap().remove("beta");
    });
    assert!(matches!(
        b.list_sync("s").unwrap_err(),
        Error::Tampered { .. }
    ));

    // Roll one secret back to an older version (its record is still validly sealed).
    fs::write(&path, &good).unwrap();
    b.put_sync(
        "s",
        "alpha",
        &SecretValue::from("alpha-second-version"),
        None,
    )
    .unwrap();
    reseal_checksum(&path, |v| {
        let vs = v["secrets"]["alpha"]["versions"].as_array_mut().unwrap();
        vs.pop();
    });
    assert!(matches!(
        b.get_sync("s", "alpha", None).unwrap_err(),
        Error::Tampered { .. }
    ));

    // Messages say what to do and never leak values.
    let msg = b.get_sync("s", "alpha", None).unwrap_err().to_string();
    assert!(msg.contains("tampered") && msg.contains("backup"), "{msg}");
    assert!(!msg.contains(SECRET_A) && !msg.contains("alpha-second"));
}

#[test]
fn missing_store_and_locked_store_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = FileOptions {
        lock_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let b = FileBackend::with_options(tmp.path().join("v"), test_key(), opts).unwrap();
    let err = b.get_sync("s", "db", None).unwrap_err();
    assert!(matches!(err, Error::StoreMissing { .. }), "{err}");
    assert!(err.to_string().contains("no store for scope \"s\""));

    b.put_sync("s", "db", &SecretValue::from(SECRET_A), None)
        .unwrap();
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(b.scope_dir("s").join("store.lock"))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let err = b
        .put_sync("s", "db", &SecretValue::from(SECRET_B), None)
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("locked by another writer"));
    // Readers are not blocked by a writer.
    assert_eq!(b.get_sync("s", "db", None).unwrap().unwrap().version, 1);
    drop(lock);
    assert_eq!(
        b.put_sync("s", "db", &SecretValue::from(SECRET_B), None)
            .unwrap(),
        2
    );
}

#[test]
fn data_key_and_master_key_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("v");
    let b = FileBackend::with_options(
        &root,
        MasterKey::passphrase("first pass".into()),
        cheap_kdf(),
    )
    .unwrap();
    b.put_sync("s", "a", &SecretValue::from(SECRET_A), None)
        .unwrap();
    b.put_sync("s", "a", &SecretValue::from(SECRET_B), None)
        .unwrap();
    let before = fs::read_to_string(b.store_path("s")).unwrap();

    b.rotate_data_key_sync("s").unwrap();
    let after = fs::read_to_string(b.store_path("s")).unwrap();
    let ct = |t: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(t.lines().nth(1).unwrap()).unwrap();
        v["secrets"]["a"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ct"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        ct(&before).iter().zip(ct(&after)).all(|(x, y)| *x != y),
        "values were not re-encrypted"
    );
    assert_eq!(
        b.get_sync("s", "a", Some(1))
            .unwrap()
            .unwrap()
            .value
            .expose(),
        SECRET_A.as_bytes()
    );
    assert_eq!(
        b.get_sync("s", "a", None).unwrap().unwrap().value.expose(),
        SECRET_B.as_bytes()
    );

    b.rotate_master_key_sync("s", &MasterKey::passphrase("second pass".into()))
        .unwrap();
    let old = FileBackend::with_options(
        &root,
        MasterKey::passphrase("first pass".into()),
        cheap_kdf(),
    )
    .unwrap();
    assert!(matches!(
        old.get_sync("s", "a", None).unwrap_err(),
        Error::WrongKey { .. }
    ));
    let new = FileBackend::with_options(
        &root,
        MasterKey::passphrase("second pass".into()),
        cheap_kdf(),
    )
    .unwrap();
    assert_eq!(
        new.get_sync("s", "a", None)
            .unwrap()
            .unwrap()
            .value
            .expose(),
        SECRET_B.as_bytes()
    );
    // From passphrase to key file.
    new.rotate_master_key_sync("s", &test_key()).unwrap();
    assert_eq!(key_backend(&root).verify_sync("s").unwrap(), 2);
}

#[test]
fn key_files_are_read_raw_or_hex() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw.key");
    MasterKey::generate_key_file(&raw).unwrap();
    assert_eq!(
        fs::metadata(&raw).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        MasterKey::generate_key_file(&raw).is_err(),
        "must not overwrite a key file"
    );
    assert!(MasterKey::from_key_file(&raw).is_ok());
    let hexf = tmp.path().join("hex.key");
    fs::write(&hexf, format!("{}\n", "ab".repeat(32))).unwrap();
    assert!(MasterKey::from_key_file(&hexf).is_ok());
    let bad = tmp.path().join("bad.key");
    fs::write(&bad, "short").unwrap();
    let err = MasterKey::from_key_file(&bad).unwrap_err();
    assert!(
        err.to_string().contains("32 bytes or 64 hex digits"),
        "{err}"
    );
    assert!(!err.to_string().contains("short"));
}

/// No value (nor its hex/base64) appears in the store file, the audit log, Debug output or errors.
#[tokio::test]
async fn no_value_leaks_into_files_debug_or_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("v");
    let backend = key_backend(&root);
    let vault = Vault::new(backend.clone()).with_actor("tester");
    let v1 = vault
        .put("s", "db", SecretValue::from(SECRET_A), Some(0))
        .await
        .unwrap();
    vault
        .put("s", "api", SecretValue::from(SECRET_B), None)
        .await
        .unwrap();
    let got = vault.get("s", "db").await.unwrap();
    let conflict = vault
        .put("s", "db", SecretValue::from(SECRET_B), Some(0))
        .await
        .unwrap_err();
    let notfound = vault.get("s", "nope").await.unwrap_err();
    backend.rotate_data_key_sync("s").unwrap();

    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("store".into(), fs::read(backend.store_path("s")).unwrap()),
        ("audit".into(), fs::read(backend.audit_path("s")).unwrap()),
        ("debug value".into(), format!("{got:?} {got}").into_bytes()),
        (
            "debug vault".into(),
            format!("{vault:?} {backend:?} {v1:?}").into_bytes(),
        ),
        (
            "debug found".into(),
            format!("{:?}", vault.lookup("s", "db").await.unwrap()).into_bytes(),
        ),
        (
            "debug list".into(),
            format!("{:?}", vault.list("s").await.unwrap()).into_bytes(),
        ),
        (
            "errors".into(),
            format!("{conflict} {conflict:?} {notfound} {notfound:?}").into_bytes(),
        ),
        (
            "debug redactor".into(),
            format!("{:?}", vault.redactor("s").await.unwrap()).into_bytes(),
        ),
    ];
    // Tampered-store errors too.
    let path = backend.store_path("s");
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let e = backend.get_sync("s", "db", None).unwrap_err();
    haystacks.push(("corrupt error".into(), format!("{e} {e:?}").into_bytes()));

    use base64::Engine as _;
    for secret in [SECRET_A, SECRET_B] {
        let needles = [
            secret.as_bytes().to_vec(),
            hex::encode(secret).into_bytes(),
            base64::engine::general_purpose::STANDARD
                .encode(secret)
                .into_bytes(),
        ];
        for (what, hay) in &haystacks {
            for needle in &needles {
                assert!(
                    !hay.windows(needle.len()).any(|w| w == needle.as_slice()),
                    "a value leaked into {what}"
                );
            }
        }
    }
    assert!(String::from_utf8_lossy(&haystacks[1].1).contains("\"action\":\"set\""));
}
