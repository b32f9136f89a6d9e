//! The crate's error type. No variant ever carries a secret value or a server response body.

use std::path::PathBuf;

/// Everything that can go wrong in landscape-vault.
///
/// Messages name the thing, the place and what to do. They never contain a secret value,
/// a key, a passphrase or an HTTP response body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The master key (passphrase or key file) does not unlock the store.
    #[error(
        "cannot unlock store {}: wrong passphrase or key file (or its key header was altered); \
         check LANDSCAPE_VAULT_PASSPHRASE / --key-file",
        store.display()
    )]
    WrongKey {
        /// The store file.
        store: PathBuf,
    },
    /// The store file is damaged: it cannot be parsed or its checksum does not match.
    #[error("store {} is corrupted: {reason}; restore it from a backup", store.display())]
    Corrupted {
        /// The store file.
        store: PathBuf,
        /// What is wrong (never contains values).
        reason: String,
    },
    /// The store file is well-formed but fails authentication: someone changed, removed,
    /// swapped or rolled back entries.
    #[error("store {} was tampered with: {what}; do not trust it, restore it from a backup", store.display())]
    Tampered {
        /// The store file.
        store: PathBuf,
        /// Which check failed (never contains values).
        what: String,
    },
    /// There is no store for this scope yet.
    #[error("no store for scope \"{scope}\" at {}; create one with `landscape vault set`", store.display())]
    StoreMissing {
        /// The scope.
        scope: String,
        /// Where the store was expected.
        store: PathBuf,
    },
    /// Another writer holds the store's lock for longer than the lock timeout.
    #[error(
        "store {} is locked by another writer (waited {waited_ms} ms); retry, or find the process holding {}",
        store.display(),
        lock.display()
    )]
    Locked {
        /// The store file.
        store: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// How long we waited.
        waited_ms: u64,
    },
    /// A check-and-set update found another version than expected.
    #[error(
        "secret \"{name}\" in scope \"{scope}\" is at version {current}, not {expected}; \
         re-read it and retry"
    )]
    Conflict {
        /// The scope.
        scope: String,
        /// The secret's name.
        name: String,
        /// The version the caller expected (0 = must not exist).
        expected: u64,
        /// The version found.
        current: u64,
    },
    /// The secret does not exist (or the requested version was pruned).
    #[error("secret \"{name}\" not found in scope \"{scope}\"")]
    NotFound {
        /// The scope searched first.
        scope: String,
        /// The secret's name.
        name: String,
    },
    /// The scope may not read secrets of another scope.
    #[error(
        "scope \"{scope}\" may not read secret \"{name}\" of scope \"{owner}\"; \
         grant it with AccessPolicy::share"
    )]
    Denied {
        /// The scope asking.
        scope: String,
        /// The scope owning the secret.
        owner: String,
        /// The secret's name.
        name: String,
    },
    /// A scope or secret name is not acceptable.
    #[error("invalid {kind} name \"{name}\": {reason}")]
    InvalidName {
        /// "scope" or "secret".
        kind: &'static str,
        /// The offending name (names are not secret).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A value is not acceptable (empty, too large...).
    #[error("invalid value for secret \"{name}\": {reason}")]
    InvalidValue {
        /// The secret's name.
        name: String,
        /// Why (never the value).
        reason: &'static str,
    },
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What we were doing ("read", "write", "rename", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is missing or malformed.
    #[error("key file {}: {reason}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Key derivation or random number generation failed.
    #[error("cryptography: {0}")]
    Crypto(String),
    /// The external backend failed. Carries the HTTP status, never the response body.
    #[error("{backend} {op} {path}: {reason}")]
    Backend {
        /// "openbao".
        backend: &'static str,
        /// The operation ("get", "put", ...).
        op: &'static str,
        /// The request path (no query string, no values).
        path: String,
        /// What happened (status code, connection error; never the body).
        reason: String,
    },
    /// The audit log fails verification.
    #[error("audit log {} line {line}: {reason}", path.display())]
    AuditTampered {
        /// The audit log.
        path: PathBuf,
        /// 1-based line number of the first bad line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store lies inside the application directory, where it could end up in git or an image.
    #[error(
        "store {} lies inside the app directory {}; put it elsewhere (e.g. ~/.local/share/landscape/vault)",
        store.display(),
        app_dir.display()
    )]
    InsideAppDir {
        /// The store root.
        store: PathBuf,
        /// The app directory.
        app_dir: PathBuf,
    },
    /// The operation is not available on this backend.
    #[error("{backend} does not support {op}")]
    Unsupported {
        /// The backend.
        backend: &'static str,
        /// The operation.
        op: &'static str,
    },
}

/// Shorthand for `Result<T, landscape_vault::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
