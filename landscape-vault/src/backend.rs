//! The storage trait a [`crate::Vault`] runs on, and its implementation for the embedded store.

use crate::audit::{AuditEvent, AuditLog};
use crate::error::{Error, Result};
use crate::file::FileBackend;
use crate::secret::{Secret, SecretMeta, SecretValue};
use async_trait::async_trait;

/// Where secrets live. Implemented by [`FileBackend`] (embedded, default) and
/// [`crate::OpenBaoBackend`]; hosts may implement it for their own stores.
///
/// Implementations must never put a value into an error, a log line or a `Debug` output.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for messages ("file", "openbao").
    fn kind(&self) -> &'static str;

    /// Reads the current version (or `version`) of a secret; `Ok(None)` when it does not exist.
    async fn get(&self, scope: &str, name: &str, version: Option<u64>) -> Result<Option<Secret>>;

    /// Writes a new version and returns its number. `cas`: `Some(0)` = must not exist yet,
    /// `Some(n)` = the current version must be `n` (else [`Error::Conflict`]); `None` = always.
    async fn put(
        &self,
        scope: &str,
        name: &str,
        value: &SecretValue,
        cas: Option<u64>,
    ) -> Result<u64>;

    /// Deletes a secret with all its versions; returns whether it existed.
    async fn delete(&self, scope: &str, name: &str) -> Result<bool>;

    /// Names and metadata of a scope's secrets, never values.
    async fn list(&self, scope: &str) -> Result<Vec<SecretMeta>>;

    /// Removes every secret of a scope.
    async fn purge_scope(&self, scope: &str) -> Result<()>;

    /// Records an audit event. The default does nothing (external stores keep their own audit).
    async fn record(&self, _scope: &str, _event: AuditEvent) -> Result<()> {
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Crypto(format!("blocking task failed: {e}")))?
}

#[async_trait]
impl Backend for FileBackend {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn get(&self, scope: &str, name: &str, version: Option<u64>) -> Result<Option<Secret>> {
        let (b, s, n) = (self.clone(), scope.to_string(), name.to_string());
        blocking(move || b.get_sync(&s, &n, version)).await
    }

    async fn put(
        &self,
        scope: &str,
        name: &str,
        value: &SecretValue,
        cas: Option<u64>,
    ) -> Result<u64> {
        let (b, s, n, v) = (
            self.clone(),
            scope.to_string(),
            name.to_string(),
            value.clone(),
        );
        blocking(move || b.put_sync(&s, &n, &v, cas)).await
    }

    async fn delete(&self, scope: &str, name: &str) -> Result<bool> {
        let (b, s, n) = (self.clone(), scope.to_string(), name.to_string());
        blocking(move || b.delete_sync(&s, &n)).await
    }

    async fn list(&self, scope: &str) -> Result<Vec<SecretMeta>> {
        let (b, s) = (self.clone(), scope.to_string());
        blocking(move || b.list_sync(&s)).await
    }

    async fn purge_scope(&self, scope: &str) -> Result<()> {
        let (b, s) = (self.clone(), scope.to_string());
        blocking(move || b.purge_scope_sync(&s)).await
    }

    async fn record(&self, scope: &str, event: AuditEvent) -> Result<()> {
        let (b, s) = (self.clone(), scope.to_string());
        blocking(move || {
            if !b.exists(&s) {
                // Nothing to chain to (e.g. a failed read of a scope that has no store).
                return Ok(());
            }
            AuditLog::for_scope(&b, &s)?.append(&event)
        })
        .await
    }
}
