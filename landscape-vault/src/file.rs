//! The embedded backend: one encrypted store file per scope directory.
//!
//! Layout under the store root (keep it outside the app directory):
//!
//! ```text
//! ROOT/                      0700
//!   SCOPE/                   0700
//!     store.lv               0600  the encrypted store (this module)
//!     store.lock             0600  writers take an exclusive flock on it
//!     audit.jsonl            0600  the HMAC-chained audit log (crate::audit)
//! ```
//!
//! `store.lv` is three lines: a magic line, a JSON body, and `sha256=<hex>` of the first two.
//! The checksum tells accidental damage ("corrupted") from deliberate change ("tampered"):
//! an attacker can recompute the checksum but not the store MAC or the AEAD tags.
//!
//! Keys: a random 32-byte *data key* (values are sealed with it) and a random 32-byte *audit key*
//! are wrapped together by the *master key* (Argon2id of a passphrase with the stored salt and
//! parameters, or a 32-byte key file). Each value version is sealed with XChaCha20-Poly1305 and a
//! fresh random nonce, with associated data (scope, name, version): a ciphertext moved to another
//! name, scope or version fails to open. The body carries an HMAC-SHA256 (key derived from the
//! data key) over everything else, so removed, added, reordered or rolled-back entries are detected.
//!
//! Writes: temp file (0600) + fsync + rename + fsync of the directory, under an exclusive lock.
//! A crash at any point leaves either the old or the new file.

use crate::crypto::{self, KdfParams};
use crate::error::{Error, Result};
use crate::secret::{validate_scope, validate_secret_name, Secret, SecretMeta, SecretValue};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

const MAGIC: &str = "LVSTORE1";
const FORMAT: u32 = 1;
/// The store file's name inside a scope directory.
pub const STORE_FILE: &str = "store.lv";
/// The lock file's name inside a scope directory.
pub const LOCK_FILE: &str = "store.lock";
/// The audit log's name inside a scope directory.
pub const AUDIT_FILE: &str = "audit.jsonl";
const TMP_PREFIX: &str = ".store.lv.tmp.";
/// Largest accepted value (1 MiB).
pub const MAX_VALUE: usize = 1 << 20;

/// The key that unlocks a store: a passphrase (stretched with Argon2id) or 32 raw key bytes.
#[derive(Clone)]
pub enum MasterKey {
    /// A passphrase; the store keeps the Argon2id salt and parameters.
    Passphrase(SecretValue),
    /// 32 random bytes, e.g. from a key file.
    Key(Zeroizing<[u8; 32]>),
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterKey::Passphrase(_) => f.write_str("MasterKey::Passphrase([redacted])"),
            MasterKey::Key(_) => f.write_str("MasterKey::Key([redacted])"),
        }
    }
}

impl MasterKey {
    /// A passphrase master key.
    pub fn passphrase(p: SecretValue) -> Self {
        MasterKey::Passphrase(p)
    }

    /// Reads a key file: exactly 32 raw bytes, or 64 hex digits (surrounding whitespace ignored).
    pub fn from_key_file(path: &Path) -> Result<Self> {
        let bytes = Zeroizing::new(fs::read(path).map_err(|e| Error::KeyFile {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?);
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() == 32 {
            key.copy_from_slice(&bytes);
            return Ok(MasterKey::Key(key));
        }
        let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
        if text.len() == 64 && hex::decode_to_slice(text, key.as_mut()).is_ok() {
            return Ok(MasterKey::Key(key));
        }
        Err(Error::KeyFile {
            path: path.to_path_buf(),
            reason: "expected exactly 32 bytes or 64 hex digits; create one with `head -c 32 /dev/urandom > FILE`"
                .into(),
        })
    }

    /// Creates a new key file with 32 random bytes (mode 0600; fails if the file exists).
    pub fn generate_key_file(path: &Path) -> Result<Self> {
        let key = Zeroizing::new(crypto::random::<32>()?);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io("create key file", path, e))?;
        f.write_all(key.as_ref())
            .map_err(|e| Error::io("write key file", path, e))?;
        f.sync_all()
            .map_err(|e| Error::io("fsync key file", path, e))?;
        Ok(MasterKey::Key(key))
    }
}

/// Options of the embedded backend.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// How many versions of each secret to keep (at least 1). Default 10.
    pub keep_versions: u32,
    /// Argon2id parameters for new stores (existing stores keep theirs). Default: 19 MiB, t=2, p=1.
    pub kdf: KdfParams,
    /// How long a writer waits for the store lock before giving up with [`Error::Locked`]. Default 10 s.
    pub lock_timeout: Duration,
    /// If set, refuse a store root inside this directory (the landscape's app directory).
    pub app_dir: Option<PathBuf>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            keep_versions: 10,
            kdf: KdfParams::default(),
            lock_timeout: Duration::from_secs(10),
            app_dir: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum KdfHeader {
    Argon2id {
        salt: String,
        m_kib: u32,
        t: u32,
        p: u32,
    },
    Keyfile {},
}

#[derive(Serialize, Deserialize, Clone)]
struct Sealed {
    nonce: String,
    ct: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct VersionRec {
    version: u64,
    created: u64,
    nonce: String,
    ct: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct Entry {
    created: u64,
    versions: Vec<VersionRec>,
}

#[derive(Serialize, Deserialize, Clone)]
struct StoreFile {
    format: u32,
    scope: String,
    generation: u64,
    kdf: KdfHeader,
    wrap: Sealed,
    keep_versions: u32,
    secrets: BTreeMap<String, Entry>,
    #[serde(default)]
    mac: String,
}

struct Keys {
    data: Zeroizing<[u8; 32]>,
    audit: Zeroizing<[u8; 32]>,
}

impl Keys {
    fn mac_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(crypto::mac(
            self.data.as_ref(),
            &[b"landscape-vault/1 store-mac key"],
        ))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn value_ad(scope: &str, name: &str, version: u64) -> Vec<u8> {
    crypto::ad(&[
        b"landscape-vault/1 value",
        scope.as_bytes(),
        name.as_bytes(),
        &version.to_be_bytes(),
    ])
}

fn wrap_ad(scope: &str, kdf: &KdfHeader) -> Result<Vec<u8>> {
    let kdf_json =
        serde_json::to_vec(kdf).map_err(|e| Error::Crypto(format!("encode key header: {e}")))?;
    Ok(crypto::ad(&[
        b"landscape-vault/1 wrap",
        scope.as_bytes(),
        &kdf_json,
    ]))
}

fn b64d(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}

/// Derived master keys by (scope, key header JSON).
type DerivedKeys = HashMap<(String, String), Zeroizing<[u8; 32]>>;

/// The embedded, encrypted file backend. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct FileBackend {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    master: MasterKey,
    opts: FileOptions,
    /// Derived master keys per (scope, key header), so Argon2id runs once per store, not per call.
    derived: Mutex<DerivedKeys>,
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("root", &self.inner.root)
            .field("master", &self.inner.master)
            .finish()
    }
}

/// A held exclusive lock on a scope's store; released on drop.
struct WriteLock {
    _file: File,
}

impl FileBackend {
    /// A backend over the store root `root` (created on first write), unlocked by `master`.
    pub fn new(root: impl Into<PathBuf>, master: MasterKey) -> Result<Self> {
        Self::with_options(root, master, FileOptions::default())
    }

    /// Like [`FileBackend::new`] with explicit options.
    pub fn with_options(
        root: impl Into<PathBuf>,
        master: MasterKey,
        opts: FileOptions,
    ) -> Result<Self> {
        let root = root.into();
        if let Some(app) = &opts.app_dir {
            let abs = |p: &Path| {
                fs::canonicalize(p)
                    .unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
            };
            let (r, a) = (abs(&root), abs(app));
            if r.starts_with(&a) {
                return Err(Error::InsideAppDir {
                    store: root,
                    app_dir: app.clone(),
                });
            }
        }
        Ok(FileBackend {
            inner: Arc::new(Inner {
                root,
                master,
                opts,
                derived: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directory of one scope.
    pub fn scope_dir(&self, scope: &str) -> PathBuf {
        self.inner.root.join(scope)
    }

    /// The store file of one scope.
    pub fn store_path(&self, scope: &str) -> PathBuf {
        self.scope_dir(scope).join(STORE_FILE)
    }

    /// The audit log of one scope.
    pub fn audit_path(&self, scope: &str) -> PathBuf {
        self.scope_dir(scope).join(AUDIT_FILE)
    }

    /// Whether a store exists for `scope`.
    pub fn exists(&self, scope: &str) -> bool {
        self.store_path(scope).exists()
    }

    fn read_file(&self, scope: &str) -> Result<Option<StoreFile>> {
        let path = self.store_path(scope);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read store", &path, e)),
        };
        parse_store(&path, &bytes).map(Some)
    }

    fn require_file(&self, scope: &str) -> Result<StoreFile> {
        self.read_file(scope)?.ok_or_else(|| Error::StoreMissing {
            scope: scope.to_string(),
            store: self.store_path(scope),
        })
    }

    fn derive_master(
        &self,
        scope: &str,
        kdf: &KdfHeader,
        master: &MasterKey,
    ) -> Result<Zeroizing<[u8; 32]>> {
        let wrong = || Error::WrongKey {
            store: self.store_path(scope),
        };
        match (kdf, master) {
            (KdfHeader::Keyfile {}, MasterKey::Key(k)) => Ok(k.clone()),
            (KdfHeader::Argon2id { salt, m_kib, t, p }, MasterKey::Passphrase(pass)) => {
                let salt = b64d(salt).ok_or_else(wrong)?;
                crypto::argon2id(
                    pass.expose(),
                    &salt,
                    &KdfParams {
                        m_kib: *m_kib,
                        t: *t,
                        p: *p,
                    },
                )
            }
            _ => Err(wrong()),
        }
    }

    fn cached_master(&self, scope: &str, kdf: &KdfHeader) -> Result<Zeroizing<[u8; 32]>> {
        let header = serde_json::to_string(kdf).map_err(|e| Error::Crypto(e.to_string()))?;
        let key = (scope.to_string(), header);
        if let Some(k) = self.inner.derived.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(k.clone());
        }
        let k = self.derive_master(scope, kdf, &self.inner.master)?;
        self.inner
            .derived
            .lock()
            .map_err(|_| poisoned())?
            .insert(key, k.clone());
        Ok(k)
    }

    /// Unwraps the keys and checks the store MAC.
    fn unlock(&self, scope: &str, f: &StoreFile) -> Result<Keys> {
        let store = self.store_path(scope);
        if f.scope != scope {
            return Err(Error::Tampered {
                store,
                what: format!("the store belongs to scope \"{}\"", f.scope),
            });
        }
        let master = self.cached_master(scope, &f.kdf)?;
        let keys = unwrap_keys(&store, scope, f, &master)?;
        verify_mac(&store, f, &keys)?;
        Ok(keys)
    }

    fn lock(&self, scope: &str) -> Result<WriteLock> {
        let dir = self.scope_dir(scope);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io("create store directory", &dir, e))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("open lock file", &path, e))?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(WriteLock { _file: file }),
                Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {}
                Err(e) => return Err(Error::io("lock", &path, e.into())),
            }
            if start.elapsed() >= self.inner.opts.lock_timeout {
                return Err(Error::Locked {
                    store: self.store_path(scope),
                    lock: path,
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            // Back-off between lock attempts (a wait for another process, not test synchronisation).
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    fn new_store(&self, scope: &str) -> Result<(StoreFile, Keys)> {
        let keys = Keys {
            data: Zeroizing::new(crypto::random()?),
            audit: Zeroizing::new(crypto::random()?),
        };
        let kdf = match &self.inner.master {
            MasterKey::Key(_) => KdfHeader::Keyfile {},
            MasterKey::Passphrase(_) => {
                let p = self.inner.opts.kdf;
                KdfHeader::Argon2id {
                    salt: B64.encode(crypto::random::<16>()?),
                    m_kib: p.m_kib,
                    t: p.t,
                    p: p.p,
                }
            }
        };
        let master = self.cached_master(scope, &kdf)?;
        let wrap = wrap_keys(scope, &kdf, &keys, &master)?;
        let f = StoreFile {
            format: FORMAT,
            scope: scope.to_string(),
            generation: 0,
            kdf,
            wrap,
            keep_versions: self.inner.opts.keep_versions.max(1),
            secrets: BTreeMap::new(),
            mac: String::new(),
        };
        Ok((f, keys))
    }

    /// Runs `op` on the unlocked store under the write lock and writes the result atomically.
    /// `create`: make a new store if there is none (otherwise [`Error::StoreMissing`]).
    fn modify<R>(
        &self,
        scope: &str,
        create: bool,
        op: impl FnOnce(&mut StoreFile, &mut Keys) -> Result<(R, bool)>,
    ) -> Result<R> {
        validate_scope(scope)?;
        let _lock = self.lock(scope)?;
        let (mut f, mut keys) = match self.read_file(scope)? {
            Some(f) => {
                let k = self.unlock(scope, &f)?;
                (f, k)
            }
            None if create => self.new_store(scope)?,
            None => {
                return Err(Error::StoreMissing {
                    scope: scope.to_string(),
                    store: self.store_path(scope),
                })
            }
        };
        let (r, changed) = op(&mut f, &mut keys)?;
        if changed {
            self.write(scope, &mut f, &keys)?;
        }
        Ok(r)
    }

    fn write(&self, scope: &str, f: &mut StoreFile, keys: &Keys) -> Result<()> {
        f.generation += 1;
        f.mac = compute_mac(f, keys)?;
        let bytes = serialize_store(f)?;
        let dir = self.scope_dir(scope);
        remove_stale_temps(&dir);
        atomic_write(&dir, &self.store_path(scope), &bytes)
    }

    /// Reads the current (or a given, still kept) version of a secret.
    pub fn get_sync(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<Secret>> {
        validate_scope(scope)?;
        validate_secret_name(name)?;
        let f = self.require_file(scope)?;
        let keys = self.unlock(scope, &f)?;
        let Some(entry) = f.secrets.get(name) else {
            return Ok(None);
        };
        let rec = match version {
            None => entry.versions.last(),
            Some(v) => entry.versions.iter().find(|r| r.version == v),
        };
        let Some(rec) = rec else { return Ok(None) };
        let value = open_value(&self.store_path(scope), scope, name, rec, &keys)?;
        Ok(Some(Secret {
            value,
            version: rec.version,
        }))
    }

    /// Writes a new version. `cas`: `Some(0)` = the secret must not exist, `Some(n)` = its
    /// current version must be `n`; `None` = unconditional. Returns the new version.
    pub fn put_sync(
        &self,
        scope: &str,
        name: &str,
        value: &SecretValue,
        cas: Option<u64>,
    ) -> Result<u64> {
        validate_secret_name(name)?;
        check_value(name, value)?;
        self.modify(scope, true, |f, keys| {
            let current = f
                .secrets
                .get(name)
                .and_then(|e| e.versions.last())
                .map(|r| r.version)
                .unwrap_or(0);
            if let Some(expected) = cas {
                if expected != current {
                    return Err(Error::Conflict {
                        scope: scope.to_string(),
                        name: name.to_string(),
                        expected,
                        current,
                    });
                }
            }
            let version = current + 1;
            let (nonce, ct) =
                crypto::seal(&keys.data, &value_ad(scope, name, version), value.expose())?;
            let t = now();
            let keep = f.keep_versions.max(1) as usize;
            let entry = f.secrets.entry(name.to_string()).or_insert_with(|| Entry {
                created: t,
                versions: Vec::new(),
            });
            entry.versions.push(VersionRec {
                version,
                created: t,
                nonce: B64.encode(nonce),
                ct: B64.encode(ct),
            });
            if entry.versions.len() > keep {
                let drop_n = entry.versions.len() - keep;
                entry.versions.drain(..drop_n);
            }
            Ok((version, true))
        })
    }

    /// Deletes a secret and all its versions. Returns whether it existed.
    pub fn delete_sync(&self, scope: &str, name: &str) -> Result<bool> {
        validate_secret_name(name)?;
        self.modify(scope, false, |f, _| {
            let existed = f.secrets.remove(name).is_some();
            Ok((existed, existed))
        })
    }

    /// Names and metadata of a scope's secrets (never values), sorted by name.
    pub fn list_sync(&self, scope: &str) -> Result<Vec<SecretMeta>> {
        validate_scope(scope)?;
        let f = self.require_file(scope)?;
        self.unlock(scope, &f)?;
        Ok(f.secrets
            .iter()
            .map(|(name, e)| SecretMeta {
                scope: scope.to_string(),
                name: name.clone(),
                version: e.versions.last().map(|r| r.version).unwrap_or(0),
                versions: e.versions.iter().map(|r| r.version).collect(),
                created_unix: e.created,
                updated_unix: e.versions.last().map(|r| r.created).unwrap_or(e.created),
            })
            .collect())
    }

    /// Removes a scope: its store and its audit log.
    pub fn purge_scope_sync(&self, scope: &str) -> Result<()> {
        validate_scope(scope)?;
        let dir = self.scope_dir(scope);
        if !dir.exists() {
            return Ok(());
        }
        let _lock = self.lock(scope)?;
        // Unlink the store first: once it is gone the scope is empty even if the rest fails.
        for name in [STORE_FILE, AUDIT_FILE] {
            let p = dir.join(name);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &p, e)),
            }
        }
        fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))
    }

    /// Re-encrypts every kept version under a fresh data key (the audit key is kept).
    pub fn rotate_data_key_sync(&self, scope: &str) -> Result<()> {
        let store = self.store_path(scope);
        self.modify(scope, false, |f, keys| {
            let new_data = Zeroizing::new(crypto::random::<32>()?);
            for (name, entry) in f.secrets.iter_mut() {
                for rec in entry.versions.iter_mut() {
                    let value = open_value(&store, scope, name, rec, keys)?;
                    let (nonce, ct) = crypto::seal(
                        &new_data,
                        &value_ad(scope, name, rec.version),
                        value.expose(),
                    )?;
                    rec.nonce = B64.encode(nonce);
                    rec.ct = B64.encode(ct);
                }
            }
            keys.data = new_data;
            let master = self.cached_master(scope, &f.kdf)?;
            f.wrap = wrap_keys(scope, &f.kdf, keys, &master)?;
            Ok(((), true))
        })
    }

    /// Re-wraps the store's keys under a new master key (new salt for passphrases). Values are
    /// not re-encrypted. Afterwards open the store with a backend built on `new`.
    pub fn rotate_master_key_sync(&self, scope: &str, new: &MasterKey) -> Result<()> {
        self.modify(scope, false, |f, keys| {
            let kdf = match new {
                MasterKey::Key(_) => KdfHeader::Keyfile {},
                MasterKey::Passphrase(_) => {
                    let p = self.inner.opts.kdf;
                    KdfHeader::Argon2id {
                        salt: B64.encode(crypto::random::<16>()?),
                        m_kib: p.m_kib,
                        t: p.t,
                        p: p.p,
                    }
                }
            };
            let master = self.derive_master(scope, &kdf, new)?;
            f.wrap = wrap_keys(scope, &kdf, keys, &master)?;
            f.kdf = kdf;
            Ok(((), true))
        })
    }

    /// The generation counter of a scope's store (incremented by every write).
    pub fn generation(&self, scope: &str) -> Result<u64> {
        let f = self.require_file(scope)?;
        self.unlock(scope, &f)?;
        Ok(f.generation)
    }

    /// The audit-chain key of a scope (unlocks the store).
    /// The audit-chain key and the current generation of a scope (unlocks the store).
    pub(crate) fn audit_key(&self, scope: &str) -> Result<(Zeroizing<[u8; 32]>, u64)> {
        let f = self.require_file(scope)?;
        Ok((self.unlock(scope, &f)?.audit.clone(), f.generation))
    }

    /// Verifies the scope's audit log and checks that the store is not older than the newest
    /// store generation the log recorded: a store file replaced by an older complete copy (a
    /// whole-store rollback, which the store MAC cannot see) is reported as [`Error::Tampered`].
    pub fn verify_audit(&self, scope: &str) -> Result<crate::audit::AuditReport> {
        let log = crate::audit::AuditLog::for_scope(self, scope)?;
        let report = log.verify()?;
        let current = self.generation(scope)?;
        if let Some(recorded) = report.max_generation {
            if recorded > current {
                return Err(Error::Tampered {
                    store: self.store_path(scope),
                    what: format!(
                        "the store is at generation {current} but the audit log saw generation {recorded}: \
                         the store file was replaced by an older copy (rolled back)"
                    ),
                });
            }
        }
        Ok(report)
    }

    /// Opens and fully checks a store: key, MAC and every kept version's AEAD tag.
    pub fn verify_sync(&self, scope: &str) -> Result<usize> {
        let f = self.require_file(scope)?;
        let keys = self.unlock(scope, &f)?;
        let store = self.store_path(scope);
        let mut n = 0;
        for (name, entry) in &f.secrets {
            for rec in &entry.versions {
                open_value(&store, scope, name, rec, &keys)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn poisoned() -> Error {
    Error::Crypto("key cache lock poisoned".into())
}

fn check_value(name: &str, v: &SecretValue) -> Result<()> {
    if v.is_empty() {
        return Err(Error::InvalidValue {
            name: name.to_string(),
            reason: "it is empty",
        });
    }
    if v.len() > MAX_VALUE {
        return Err(Error::InvalidValue {
            name: name.to_string(),
            reason: "it is larger than 1 MiB",
        });
    }
    Ok(())
}

fn wrap_keys(scope: &str, kdf: &KdfHeader, keys: &Keys, master: &[u8; 32]) -> Result<Sealed> {
    let mut pt = Zeroizing::new([0u8; 64]);
    pt[..32].copy_from_slice(keys.data.as_ref());
    pt[32..].copy_from_slice(keys.audit.as_ref());
    let (nonce, ct) = crypto::seal(master, &wrap_ad(scope, kdf)?, pt.as_ref())?;
    Ok(Sealed {
        nonce: B64.encode(nonce),
        ct: B64.encode(ct),
    })
}

fn unwrap_keys(store: &Path, scope: &str, f: &StoreFile, master: &[u8; 32]) -> Result<Keys> {
    let wrong = || Error::WrongKey {
        store: store.to_path_buf(),
    };
    let nonce = b64d(&f.wrap.nonce).ok_or_else(wrong)?;
    let ct = b64d(&f.wrap.ct).ok_or_else(wrong)?;
    let pt = crypto::open(master, &nonce, &wrap_ad(scope, &f.kdf)?, &ct).ok_or_else(wrong)?;
    if pt.len() != 64 {
        return Err(wrong());
    }
    let mut data = Zeroizing::new([0u8; 32]);
    let mut audit = Zeroizing::new([0u8; 32]);
    data.copy_from_slice(&pt[..32]);
    audit.copy_from_slice(&pt[32..]);
    Ok(Keys { data, audit })
}

fn compute_mac(f: &StoreFile, keys: &Keys) -> Result<String> {
    let mut body = f.clone();
    body.mac.clear();
    let bytes =
        serde_json::to_vec(&body).map_err(|e| Error::Crypto(format!("encode store: {e}")))?;
    Ok(hex::encode(crypto::mac(
        keys.mac_key().as_ref(),
        &[b"landscape-vault/1 store", &bytes],
    )))
}

fn verify_mac(store: &Path, f: &StoreFile, keys: &Keys) -> Result<()> {
    let tampered = || Error::Tampered {
        store: store.to_path_buf(),
        what: "the store MAC does not match: entries were changed, added, removed or rolled back"
            .into(),
    };
    let tag = hex::decode(&f.mac).map_err(|_| tampered())?;
    let mut body = f.clone();
    body.mac.clear();
    let bytes =
        serde_json::to_vec(&body).map_err(|e| Error::Crypto(format!("encode store: {e}")))?;
    if crypto::mac_verify(
        keys.mac_key().as_ref(),
        &[b"landscape-vault/1 store", &bytes],
        &tag,
    ) {
        Ok(())
    } else {
        Err(tampered())
    }
}

fn open_value(
    store: &Path,
    scope: &str,
    name: &str,
    rec: &VersionRec,
    keys: &Keys,
) -> Result<SecretValue> {
    let tampered = || {
        Error::Tampered {
        store: store.to_path_buf(),
        what: format!(
            "secret \"{name}\" version {} fails authentication (ciphertext altered or moved from another entry)",
            rec.version
        ),
    }
    };
    let nonce = b64d(&rec.nonce).ok_or_else(tampered)?;
    let ct = b64d(&rec.ct).ok_or_else(tampered)?;
    let mut pt = crypto::open(&keys.data, &nonce, &value_ad(scope, name, rec.version), &ct)
        .ok_or_else(tampered)?;
    Ok(SecretValue::new(std::mem::take(&mut *pt)))
}

fn serialize_store(f: &StoreFile) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC.as_bytes());
    out.push(b'\n');
    serde_json::to_writer(&mut out, f).map_err(|e| Error::Crypto(format!("encode store: {e}")))?;
    out.push(b'\n');
    let sum = hex::encode(Sha256::digest(&out));
    out.extend_from_slice(b"sha256=");
    out.extend_from_slice(sum.as_bytes());
    out.push(b'\n');
    Ok(out)
}

fn parse_store(path: &Path, bytes: &[u8]) -> Result<StoreFile> {
    let corrupted = |reason: &str| Error::Corrupted {
        store: path.to_path_buf(),
        reason: reason.to_string(),
    };
    // Layout: MAGIC \n JSON \n sha256=HEX \n
    let body_end = bytes
        .strip_suffix(b"\n")
        .and_then(|b| b.iter().rposition(|&c| c == b'\n'))
        .map(|i| i + 1)
        .ok_or_else(|| corrupted("it is truncated (no checksum line)"))?;
    let (body, sum_line) = bytes.split_at(body_end);
    let sum_hex = sum_line
        .strip_prefix(b"sha256=")
        .and_then(|s| s.strip_suffix(b"\n"))
        .ok_or_else(|| corrupted("the checksum line is damaged"))?;
    let expected = hex::encode(Sha256::digest(body));
    if sum_hex != expected.as_bytes() {
        return Err(corrupted(
            "the checksum does not match (the file was damaged or cut short)",
        ));
    }
    let json = body
        .strip_prefix(MAGIC.as_bytes())
        .and_then(|b| b.strip_prefix(b"\n"))
        .and_then(|b| b.strip_suffix(b"\n"))
        .ok_or_else(|| corrupted("it is not a landscape-vault store (bad magic line)"))?;
    let f: StoreFile = serde_json::from_slice(json).map_err(|e| {
        // serde_json errors name positions and expected types, never the input.
        Error::Corrupted {
            store: path.to_path_buf(),
            reason: format!("the body does not parse: {e}"),
        }
    })?;
    if f.format != FORMAT {
        return Err(corrupted(
            "unknown store format version; upgrade landscape-vault",
        ));
    }
    Ok(f)
}

fn remove_stale_temps(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn atomic_write(dir: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    let suffix = hex::encode(crypto::random::<6>()?);
    let tmp = dir.join(format!("{TMP_PREFIX}{}.{suffix}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io("create temp file", &tmp, e))?;
    let res = (|| {
        f.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, target).map_err(|e| Error::io("rename into place", target, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync directory", dir, e))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dir: &Path) -> FileBackend {
        FileBackend::new(dir.join("vault"), MasterKey::Key(Zeroizing::new([3u8; 32]))).unwrap()
    }

    /// With the real keys, an attacker-grade swap (MAC recomputed) is still caught by the AEAD
    /// associated data: each ciphertext is bound to its name and version.
    #[test]
    fn swapped_ciphertexts_fail_even_with_a_valid_mac() {
        let tmp = tempfile::tempdir().unwrap();
        let b = backend(tmp.path());
        b.put_sync("s", "alpha", &SecretValue::from("alpha-value-1234"), None)
            .unwrap();
        b.put_sync("s", "beta", &SecretValue::from("beta-value-56789"), None)
            .unwrap();
        let mut f = b.require_file("s").unwrap();
        let keys = b.unlock("s", &f).unwrap();
        let a = f.secrets["alpha"].versions[0].clone();
        let bb = f.secrets["beta"].versions[0].clone();
        f.secrets.get_mut("alpha").unwrap().versions[0] = VersionRec {
            version: a.version,
            ..bb
        };
        f.secrets.get_mut("beta").unwrap().versions[0] = VersionRec {
            version: bb.version,
            ..a
        };
        f.mac = compute_mac(&f, &keys).unwrap();
        atomic_write(
            &b.scope_dir("s"),
            &b.store_path("s"),
            &serialize_store(&f).unwrap(),
        )
        .unwrap();
        let err = b.get_sync("s", "alpha", None).unwrap_err();
        assert!(matches!(err, Error::Tampered { .. }), "{err}");
        assert!(err.to_string().contains("\"alpha\""), "{err}");
        // The same store moved to another scope name does not open either.
        fs::rename(b.scope_dir("s"), b.scope_dir("t")).unwrap();
        assert!(matches!(
            b.list_sync("t").unwrap_err(),
            Error::Tampered { .. }
        ));
    }

    #[test]
    fn versions_are_pruned_to_keep_n() {
        let tmp = tempfile::tempdir().unwrap();
        let b = FileBackend::with_options(
            tmp.path().join("v"),
            MasterKey::Key(Zeroizing::new([1u8; 32])),
            FileOptions {
                keep_versions: 3,
                ..Default::default()
            },
        )
        .unwrap();
        for i in 1..=5 {
            let v = b
                .put_sync(
                    "s",
                    "k",
                    &SecretValue::from(format!("value-{i}").as_str()),
                    None,
                )
                .unwrap();
            assert_eq!(v, i);
        }
        let meta = b.list_sync("s").unwrap();
        assert_eq!(meta[0].versions, vec![3, 4, 5]);
        assert!(b.get_sync("s", "k", Some(2)).unwrap().is_none());
        assert_eq!(
            b.get_sync("s", "k", Some(4))
                .unwrap()
                .unwrap()
                .value
                .expose(),
            b"value-4"
        );
    }

    #[test]
    fn store_inside_app_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = FileOptions {
            app_dir: Some(tmp.path().to_path_buf()),
            ..Default::default()
        };
        let err = FileBackend::with_options(
            tmp.path().join("secrets"),
            MasterKey::Key(Zeroizing::new([1; 32])),
            opts,
        )
        .unwrap_err();
        assert!(matches!(err, Error::InsideAppDir { .. }));
    }
}
