//! The [`Vault`] facade: scopes and access, audit, change events, redactors.

use crate::audit::{AuditAction, AuditEvent};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::redact::{Redactor, DEFAULT_MIN_LEN};
use crate::secret::{validate_scope, validate_secret_name, SecretMeta, SecretValue};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Which scopes may read which shared scopes. Deny by default: a scope sees only its own
/// secrets until a shared scope is assigned to it with [`AccessPolicy::share`].
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    shared: HashMap<String, Vec<String>>,
}

impl AccessPolicy {
    /// The empty (deny-all) policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `scope` read the secrets of `shared` (looked up after its own, in the order granted).
    pub fn share(mut self, scope: &str, shared: &str) -> Self {
        let v = self.shared.entry(scope.to_string()).or_default();
        if !v.iter().any(|s| s == shared) {
            v.push(shared.to_string());
        }
        self
    }

    /// The shared scopes assigned to `scope`, in lookup order.
    pub fn shared_for(&self, scope: &str) -> &[String] {
        self.shared.get(scope).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `scope` may read secrets owned by `owner`.
    pub fn may_read(&self, scope: &str, owner: &str) -> bool {
        scope == owner || self.shared_for(scope).iter().any(|s| s == owner)
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// A new version was written.
    Set,
    /// The secret was deleted.
    Deleted,
}

/// A change event: a host restarts the services that use `scope`/`name`
/// (see [`crate::Resolved::uses`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The scope of the secret.
    pub scope: String,
    /// The secret's name.
    pub name: String,
    /// The new version (`None` for deletions).
    pub version: Option<u64>,
    /// What happened.
    pub kind: ChangeKind,
}

/// The outcome of [`Vault::put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The version written.
    pub version: u64,
    /// Warnings for the user (e.g. the value is too short to be masked in output).
    pub warnings: Vec<String>,
}

/// A secret found by [`Vault::lookup`].
#[derive(Debug, Clone)]
pub struct Found {
    /// The scope that owns it (the asking scope or a shared one).
    pub owner: String,
    /// The secret's name.
    pub name: String,
    /// The version read.
    pub version: u64,
    /// The value.
    pub value: SecretValue,
}

/// The secrets facade: a [`Backend`], an [`AccessPolicy`], an actor for the audit log, and a
/// channel of [`Change`] events.
#[derive(Clone)]
pub struct Vault {
    backend: Arc<dyn Backend>,
    policy: AccessPolicy,
    actor: String,
    changes: broadcast::Sender<Change>,
    min_mask_len: usize,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("backend", &self.backend.kind())
            .field("policy", &self.policy)
            .field("actor", &self.actor)
            .finish()
    }
}

impl Vault {
    /// A vault over `backend`, deny-all policy, actor `"unknown"`.
    pub fn new(backend: impl Backend) -> Self {
        Self::from_arc(Arc::new(backend))
    }

    /// Like [`Vault::new`] for a shared backend.
    pub fn from_arc(backend: Arc<dyn Backend>) -> Self {
        let (changes, _) = broadcast::channel(256);
        Vault {
            backend,
            policy: AccessPolicy::new(),
            actor: "unknown".into(),
            changes,
            min_mask_len: DEFAULT_MIN_LEN,
        }
    }

    /// Sets who acts, for the audit log.
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    /// Sets the access policy.
    pub fn with_policy(mut self, policy: AccessPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Values shorter than this are not masked by redactors (and `put` warns). Default 6.
    pub fn with_min_mask_len(mut self, n: usize) -> Self {
        self.min_mask_len = n;
        self
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The access policy.
    pub fn policy(&self) -> &AccessPolicy {
        &self.policy
    }

    /// Subscribes to change events (new versions, deletions) made through this vault or its clones.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn audit(
        &self,
        scope: &str,
        action: AuditAction,
        name: &str,
        version: Option<u64>,
        result: &str,
    ) -> Result<()> {
        let ev = AuditEvent {
            actor: self.actor.clone(),
            action,
            name: name.to_string(),
            version,
            result: result.to_string(),
        };
        self.backend.record(scope, ev).await
    }

    /// Looks a reference up as seen from `scope`: `NAME` searches the scope itself, then its
    /// shared scopes in order; `OWNER/NAME` reads scope `OWNER` if the policy allows it.
    pub async fn lookup(&self, scope: &str, reference: &str) -> Result<Found> {
        validate_scope(scope)?;
        let candidates: Vec<String> = match reference.split_once('/') {
            Some((owner, name)) => {
                validate_scope(owner)?;
                validate_secret_name(name)?;
                if !self.policy.may_read(scope, owner) {
                    self.audit(scope, AuditAction::Get, reference, None, "denied")
                        .await?;
                    return Err(Error::Denied {
                        scope: scope.into(),
                        owner: owner.into(),
                        name: name.into(),
                    });
                }
                vec![owner.to_string()]
            }
            None => {
                validate_secret_name(reference)?;
                std::iter::once(scope.to_string())
                    .chain(self.policy.shared_for(scope).iter().cloned())
                    .collect()
            }
        };
        let name = reference.rsplit('/').next().unwrap_or(reference);
        for owner in candidates {
            match self.backend.get(&owner, name, None).await {
                Ok(Some(s)) => {
                    tracing::debug!(scope, owner = %owner, name, version = s.version, "vault: secret read");
                    self.audit(&owner, AuditAction::Get, name, Some(s.version), "ok")
                        .await?;
                    return Ok(Found {
                        owner,
                        name: name.to_string(),
                        version: s.version,
                        value: s.value,
                    });
                }
                Ok(None) | Err(Error::StoreMissing { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.audit(scope, AuditAction::Get, reference, None, "not-found")
            .await?;
        Err(Error::NotFound {
            scope: scope.into(),
            name: reference.into(),
        })
    }

    /// The value of `reference` as seen from `scope` (see [`Vault::lookup`]).
    pub async fn get(&self, scope: &str, reference: &str) -> Result<SecretValue> {
        Ok(self.lookup(scope, reference).await?.value)
    }

    /// Reads one version of a secret of `scope` itself.
    pub async fn get_version(&self, scope: &str, name: &str, version: u64) -> Result<SecretValue> {
        match self.backend.get(scope, name, Some(version)).await? {
            Some(s) => {
                self.audit(scope, AuditAction::Get, name, Some(version), "ok")
                    .await?;
                Ok(s.value)
            }
            None => Err(Error::NotFound {
                scope: scope.into(),
                name: format!("{name} (version {version})"),
            }),
        }
    }

    /// Writes a new version of `name` in `scope` (check-and-set with `cas`, see [`Backend::put`]).
    pub async fn put(
        &self,
        scope: &str,
        name: &str,
        value: SecretValue,
        cas: Option<u64>,
    ) -> Result<PutOutcome> {
        validate_scope(scope)?;
        validate_secret_name(name)?;
        let res = self.backend.put(scope, name, &value, cas).await;
        let version = match res {
            Ok(v) => v,
            Err(e) => {
                let result = if matches!(e, Error::Conflict { .. }) {
                    "conflict"
                } else {
                    "error"
                };
                // Best effort: the store may not be readable (that is why the put failed).
                let _ = self
                    .audit(scope, AuditAction::Set, name, None, result)
                    .await;
                return Err(e);
            }
        };
        tracing::debug!(scope, name, version, "vault: secret written");
        self.audit(scope, AuditAction::Set, name, Some(version), "ok")
            .await?;
        let mut warnings = Vec::new();
        if value.len() < self.min_mask_len {
            let w = format!(
                "secret \"{name}\" is shorter than {} bytes: it will not be masked in logs; use a longer value",
                self.min_mask_len
            );
            tracing::warn!(scope, name, "{w}");
            warnings.push(w);
        }
        let _ = self.changes.send(Change {
            scope: scope.into(),
            name: name.into(),
            version: Some(version),
            kind: ChangeKind::Set,
        });
        Ok(PutOutcome { version, warnings })
    }

    /// Deletes `name` from `scope`; returns whether it existed.
    pub async fn delete(&self, scope: &str, name: &str) -> Result<bool> {
        validate_scope(scope)?;
        validate_secret_name(name)?;
        let existed = self.backend.delete(scope, name).await?;
        self.audit(
            scope,
            AuditAction::Delete,
            name,
            None,
            if existed { "ok" } else { "not-found" },
        )
        .await?;
        if existed {
            tracing::debug!(scope, name, "vault: secret deleted");
            let _ = self.changes.send(Change {
                scope: scope.into(),
                name: name.into(),
                version: None,
                kind: ChangeKind::Deleted,
            });
        }
        Ok(existed)
    }

    /// Names and metadata of `scope`'s own secrets (never values).
    pub async fn list(&self, scope: &str) -> Result<Vec<SecretMeta>> {
        validate_scope(scope)?;
        self.backend.list(scope).await
    }

    /// Removes every secret of `scope`.
    pub async fn purge_scope(&self, scope: &str) -> Result<()> {
        validate_scope(scope)?;
        self.backend.purge_scope(scope).await
    }

    /// Watches `scopes` for changes made by *other* processes (e.g. `landscape vault set`) and
    /// emits them as [`Change`] events on [`Vault::subscribe`]. Takes a baseline of the versions
    /// (metadata only, via [`Backend::list`]) before returning, then compares every `every`.
    /// Abort the returned handle to stop. Changes this vault makes itself are announced directly
    /// (and again by the watcher, as a repeated event carrying the same version).
    pub async fn watch(
        &self,
        scopes: Vec<String>,
        every: std::time::Duration,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let this = self.clone();
        let mut seen = HashMap::new();
        for scope in &scopes {
            validate_scope(scope)?;
            seen.insert(scope.clone(), this.versions(scope).await?);
        }
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                for scope in &scopes {
                    let now = match this.versions(scope).await {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(scope, error = %e, "vault watcher: cannot list the scope");
                            continue;
                        }
                    };
                    let before = seen.entry(scope.clone()).or_default();
                    for (name, v) in &now {
                        if before.get(name) != Some(v) {
                            let _ = this.changes.send(Change {
                                scope: scope.clone(),
                                name: name.clone(),
                                version: Some(*v),
                                kind: ChangeKind::Set,
                            });
                        }
                    }
                    for name in before.keys().filter(|n| !now.contains_key(*n)) {
                        let _ = this.changes.send(Change {
                            scope: scope.clone(),
                            name: name.clone(),
                            version: None,
                            kind: ChangeKind::Deleted,
                        });
                    }
                    *before = now;
                }
            }
        }))
    }

    async fn versions(&self, scope: &str) -> Result<HashMap<String, u64>> {
        match self.backend.list(scope).await {
            Ok(m) => Ok(m.into_iter().map(|m| (m.name, m.version)).collect()),
            Err(Error::StoreMissing { .. }) => Ok(HashMap::new()),
            Err(e) => Err(e),
        }
    }

    /// Records a resolution in the audit log of `scope`.
    pub(crate) async fn audit_resolve(&self, scope: &str, what: &str, result: &str) -> Result<()> {
        self.audit(scope, AuditAction::Resolve, what, None, result)
            .await
    }

    /// A redactor for the output of anything running in `scope`: it masks the current value of
    /// every secret the scope can see (its own and its shared scopes').
    pub async fn redactor(&self, scope: &str) -> Result<Redactor> {
        validate_scope(scope)?;
        let mut values = Vec::new();
        let owners: Vec<String> = std::iter::once(scope.to_string())
            .chain(self.policy.shared_for(scope).iter().cloned())
            .collect();
        for owner in owners {
            let metas = match self.backend.list(&owner).await {
                Ok(m) => m,
                Err(Error::StoreMissing { .. }) => continue,
                Err(e) => return Err(e),
            };
            for m in metas {
                if let Some(s) = self.backend.get(&owner, &m.name, None).await? {
                    values.push(s.value);
                }
            }
        }
        self.audit_resolve(scope, "redactor", "ok").await?;
        Ok(Redactor::with_min_len(values.iter(), self.min_mask_len))
    }
}
