//! Helpers shared by the integration tests.
#![allow(dead_code)]

use landscape_vault::{FileBackend, FileOptions, KdfParams, MasterKey};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// A fixed test key (tests only).
pub fn test_key() -> MasterKey {
    MasterKey::Key(Zeroizing::new([0x5a; 32]))
}

/// A passphrase backend with cheap Argon2id parameters (debug builds are slow).
pub fn cheap_kdf() -> FileOptions {
    FileOptions {
        kdf: KdfParams {
            m_kib: 256,
            t: 1,
            p: 1,
        },
        ..Default::default()
    }
}

pub fn key_backend(root: &Path) -> FileBackend {
    FileBackend::new(root, test_key()).unwrap()
}

/// A small xorshift generator; the seed is printed so failures can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn from_time(label: &str) -> Rng {
        let seed = std::env::var("LV_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{label}: seed {seed} (set LV_TEST_SEED to replay)");
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A command that re-runs this test binary, executing only the test `name` in child role `role`.
pub fn child(name: &str, role: &str, store: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env("LV_CHILD_ROLE", role)
    .env("LV_CHILD_STORE", store)
    .stdin(Stdio::null());
    c
}

/// The role this process was started in, if it is a child.
pub fn child_role() -> Option<(String, std::path::PathBuf)> {
    let role = std::env::var("LV_CHILD_ROLE").ok()?;
    let store = std::env::var_os("LV_CHILD_STORE")?;
    Some((role, store.into()))
}
