//! Secrets for landscapes: a value written as `${{ vault.dbPassword }}` in a service's env reaches
//! the process at start and nowhere else — not the app directory, not git, not a log line, not an
//! error message, not a `Debug` print.
//!
//! - [`Vault`]: the facade over a [`Backend`] — get / put with check-and-set / delete / list /
//!   purge, per-scope access with explicitly shared scopes ([`AccessPolicy`]), audit, and
//!   [`Change`] events.
//! - [`FileBackend`]: the embedded default — one encrypted store file per scope directory
//!   (envelope encryption, XChaCha20-Poly1305, Argon2id or a key file, store MAC, atomic writes).
//! - `OpenBaoBackend`: KV v2 on an OpenBao (or Vault) server (feature `openbao`, on by
//!   default).
//! - [`resolve()`]: renders each service's final environment from a parsed landscape, or lists every
//!   missing / denied reference with its position in the ci.yml.
//! - [`Redactor`]: masks secret values (and their encodings) in streamed output.
//! - [`AuditLog`]: the HMAC-chained, append-only audit log.
//!
//! ```
//! use landscape_vault::{FileBackend, MasterKey, Redactor, SecretValue, Vault};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let key = MasterKey::generate_key_file(&dir.path().join("master.key"))?;
//! let vault = Vault::new(FileBackend::new(dir.path().join("vault"), key)?).with_actor("alice");
//!
//! let v1 = vault.put("team-1", "dbPassword", SecretValue::from("correct horse battery"), Some(0)).await?;
//! assert_eq!(v1.version, 1);
//! let value = vault.get("team-1", "dbPassword").await?;
//! assert_eq!(value.expose_str(), Some("correct horse battery"));
//! assert_eq!(format!("{value:?}"), "[redacted]");
//!
//! // Output of services is filtered before it reaches a log.
//! let redactor: Redactor = vault.redactor("team-1").await?;
//! assert_eq!(redactor.redact(b"pw=correct horse battery"), b"pw=***");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

pub mod audit;
mod backend;
pub mod cli;
mod crypto;
mod error;
pub mod file;
#[cfg(feature = "openbao")]
pub mod openbao;
pub mod redact;
pub mod resolve;
mod secret;
mod vault;

pub use audit::{AuditAction, AuditEvent, AuditLog, AuditReport};
pub use backend::Backend;
pub use crypto::KdfParams;
pub use error::{Error, Result};
pub use file::{FileBackend, FileOptions, MasterKey};
#[cfg(feature = "openbao")]
pub use openbao::OpenBaoBackend;
pub use redact::{RedactStream, RedactWriter, Redactor};
pub use resolve::{
    resolve, Context, Problem, ProblemKind, ResolveError, Resolved, ServiceEnv, Use,
};
pub use secret::{validate_scope, validate_secret_name, Secret, SecretMeta, SecretValue};
pub use vault::{AccessPolicy, Change, ChangeKind, Found, PutOutcome, Vault};

/// Re-exports for the `landscape` CLI example (which may not add dependencies of its own).
#[doc(hidden)]
pub mod __private {
    pub use tokio;
}
