//! Managed services: `provider: postgres`, `provider: redis` and the seam through which
//! a host plugs in its own providers (a cloud database, a team-shared instance).
//!
//! A [`Provider`] is keyed by its name and schema version (`postgres`/`v1`, the
//! `provider: {name, schemaVersion}` of a `ci.yml` service). It
//!
//! * [validates](Provider::validate) the service's `config`, `secrets`, `plan.parameters`
//!   and `backups` against its own schema — one positioned [`Diagnostic`] per problem,
//!   like every other diagnostic of the spec;
//! * [provisions](Provider::provision) the resource, idempotently: a durable
//!   [`ResourceId`] is stored in the service's data directory, and a second call returns it
//!   without initialising anything again;
//! * says how the supervisor [runs the server](Provider::service_def): a plain
//!   [`ServiceDef`], so that restarts on a crash, readiness by the protocol
//!   ([`Probe::Exchange`](crate::Probe::Exchange)), the landscape network, records and
//!   redacted logs come from supervision as for every other service;
//! * [exports](Provider::connection) its [`Connection`] (host = the service name inside
//!   the landscape network, port, user, database, a [`Secret`] password);
//! * [backs up](Provider::backup), [restores](Provider::restore) and
//!   [deprovisions](Provider::deprovision) (the data goes).
//!
//! [`Providers`] is the registry a host consults (an unknown name is an error that lists
//! the registered ones); [`Providers::builtin`] holds the two built-in providers, real
//! Debian servers run as landscape instances on the host base:
//! [`Postgres`] and [`Redis`].
//!
//! Every call gets a [`ManagedContext`]: the service's name, the landscape's
//! [`Runtime`], its **data directory** (per landscape and service, outside the app
//! directory, mode 0700, owned by the user running the host; it survives `down` and goes
//! only with deprovisioning), the log directory for one-shot jobs (`initdb`, `pg_dump`),
//! and the service's config, plan parameters and secrets *as rendered by the host* (the
//! vault's `${{ vault.X }}` resolved: the runtime never sees the vault).
//!
//! Data directory layout (the built-in providers):
//!
//! | path | owner | what |
//! |---|---|---|
//! | `DATA/` | the host's user, 0700 | created by [`ManagedContext::ensure_data_dir`] |
//! | `DATA/resource.json` | the host's user, 0600 | the resource id and what the provider needs to find it again |
//! | `DATA/state/` | the server's container user, 0700 | mounted at `/var/lib/landscape` in the server's instance |
//! | `DATA/state/backups/` | the server's container user | [`Provider::backup`] writes here; [`run_backups`] prunes here |
//!
//! ```no_run
//! use landscape_runtime::managed::{ManagedContext, Providers, Secret};
//! use landscape_runtime::{Runtime, Supervisor, SupervisorConfig};
//! use std::sync::Arc;
//!
//! # async fn demo(service: &landscape_spec::Service) -> Result<(), Box<dyn std::error::Error>> {
//! let providers = Providers::builtin();
//! let diagnostics = providers.validate(service);
//! assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:?}");
//! let provider = providers.for_service(service)?;
//!
//! let runtime = Arc::new(Runtime::with_defaults()?);
//! // Secrets as the host's vault rendered them.
//! let secrets = [
//!     ("userPassword".to_string(), Secret::new("app-password")),
//!     ("superuserPassword".to_string(), Secret::new("admin-password")),
//! ];
//! let ctx = ManagedContext::from_service(
//!     service,
//!     runtime.clone(),
//!     "/var/lib/my-host/landscapes/shop/services/postgres".into(),
//!     "/var/lib/my-host/landscapes/shop/logs".into(),
//!     secrets.into_iter().collect(),
//! );
//! let resource = provider.provision(&ctx).await?; // initdb the first time only
//! let def = provider.service_def(&ctx, &resource).await?.expect("runs locally");
//! let cfg = SupervisorConfig::new("shop", "/srv/shop/app".into(), "/var/lib/my-host/landscapes/shop/logs".into());
//! let supervisor = Supervisor::new(runtime, cfg)?;
//! supervisor.start(vec![def])?; // supervised like any service: restarts, probe, logs
//! let conn = provider.connection(&ctx).await?;
//! // Give the other services `conn.env("POSTGRES")` (POSTGRES_HOST=postgres, ...).
//! # let _ = conn; Ok(()) }
//! ```

pub mod postgres;
pub mod redis;

use crate::logs::{LogConfig, Redact};
use crate::supervisor::ServiceDef;
use crate::{BindMount, InstanceSpec, Output, Process, Runtime, User};
use landscape_spec::{Diagnostic, Service, Span};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use postgres::Postgres;
pub use redis::Redis;

/// Where a built-in provider's state directory (`DATA/state`) appears inside its
/// instances.
pub const STATE_MOUNT: &str = "/var/lib/landscape";

/// Diagnostic codes of the providers' own schemas (errors and warnings never share one).
pub mod codes {
    /// The service names a provider (or schema version) nobody registered.
    pub const UNKNOWN_PROVIDER: &str = "managed-unknown-provider";
    /// A `config`, `secrets`, `plan.parameters` or `backups` key the provider does not know.
    pub const UNKNOWN_KEY: &str = "managed-unknown-key";
    /// A value of the wrong type or out of range.
    pub const BAD_VALUE: &str = "managed-bad-value";
    /// A required key is missing.
    pub const MISSING_KEY: &str = "managed-missing-key";
    /// Warning: a plan parameter is accepted but not enforced locally.
    pub const NOT_ENFORCED: &str = "managed-not-enforced";
    /// Warning: the declared server version is not the one installed here.
    pub const VERSION_MISMATCH: &str = "managed-version-mismatch";
}

/// Errors of providers and the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No provider is registered under this name and schema version.
    #[error("no managed-service provider {name:?} (schema version {version:?}) is registered; registered: {}; check `provider.name`/`provider.schemaVersion` or register the provider with Providers::register", list_or_none(registered))]
    UnknownProvider {
        /// The name asked for.
        name: String,
        /// The schema version asked for (`""`: none given).
        version: String,
        /// Every registered `name/version`.
        registered: Vec<String>,
    },
    /// The service's settings do not fit the provider, or its data does not fit this
    /// machine (a missing secret, a data directory of another server version...).
    #[error("service {service:?}: {message}")]
    Config {
        /// The service.
        service: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A one-shot job of the provider (initdb, pg_dump, ...) failed.
    #[error(
        "service {service:?}: {job} failed ({exit}){}",
        last_lines_suffix(last_lines)
    )]
    Job {
        /// The service.
        service: String,
        /// The job.
        job: String,
        /// How it ended.
        exit: String,
        /// Its last lines of output (redacted).
        last_lines: Vec<String>,
    },
    /// The provider does not offer this operation.
    #[error("service {service:?}: provider {provider:?} does not support {what}")]
    Unsupported {
        /// The service.
        service: String,
        /// The provider.
        provider: String,
        /// The operation, and what to do instead.
        what: String,
    },
    /// A file operation on the data directory failed.
    #[error("service {service:?}: {what}: {source}")]
    Io {
        /// The service.
        service: String,
        /// What was being done, naming the path.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime refused or failed (starting an instance, ids...).
    #[error(transparent)]
    Runtime(#[from] crate::Error),
    /// A host provider's own error.
    #[error("service {service:?}: {source}")]
    Other {
        /// The service.
        service: String,
        /// The provider's error (never carrying a secret value).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn last_lines_suffix(lines: &[String]) -> String {
    let shown: Vec<&str> = lines
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(String::as_str)
        .collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!("; last output: {}", shown.join(" | "))
    }
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A secret value (a password). Its `Debug` and `Display` never show it; read it with
/// [`Secret::expose`], only where it is handed on (a file of mode 0600, an environment
/// variable of the instance that needs it). Not serialisable, so it cannot end up in a
/// record by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

/// The durable id of a provisioned resource (kept in the data directory and, by the
/// host, in the landscape's records).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceId(pub String);

impl ResourceId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the other services reach a managed service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// URL scheme (`postgres`, `redis`).
    pub scheme: String,
    /// Host name: the service name inside the landscape network (for a local provider).
    pub host: String,
    /// Port.
    pub port: u16,
    /// User to log in as.
    pub user: String,
    /// Database, where the protocol has named ones.
    pub database: Option<String>,
    /// Password.
    pub password: Secret,
}

impl Connection {
    /// `scheme://user:password@host:port/database`, user and password percent-encoded.
    /// A [`Secret`], since it holds the password.
    pub fn url(&self) -> Secret {
        let mut url = format!(
            "{}://{}:{}@{}:{}",
            self.scheme,
            percent_encode(&self.user),
            percent_encode(self.password.expose()),
            self.host,
            self.port
        );
        if let Some(db) = &self.database {
            url.push('/');
            url.push_str(&percent_encode(db));
        }
        Secret(url)
    }

    /// Environment variables for a service that uses this one: `PREFIX_HOST`,
    /// `PREFIX_PORT`, `PREFIX_USER`, `PREFIX_DATABASE` (where there is one),
    /// `PREFIX_PASSWORD` and `PREFIX_URL`. The values include the password: hand them only
    /// to an instance's environment (which `Debug` of a spec never prints).
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        let mut env = vec![
            (format!("{prefix}_HOST"), self.host.clone()),
            (format!("{prefix}_PORT"), self.port.to_string()),
            (format!("{prefix}_USER"), self.user.clone()),
        ];
        if let Some(db) = &self.database {
            env.push((format!("{prefix}_DATABASE"), db.clone()));
        }
        env.push((
            format!("{prefix}_PASSWORD"),
            self.password.expose().to_string(),
        ));
        env.push((format!("{prefix}_URL"), self.url().expose().to_string()));
        env
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Everything a provider call needs about one managed service of one landscape. Cheap to
/// clone (the runtime is shared).
#[derive(Clone)]
pub struct ManagedContext {
    /// The service name (also its host name in the landscape network).
    pub service: String,
    /// The landscape's runtime.
    pub runtime: Arc<Runtime>,
    /// The service's data directory: per landscape and service, outside the app
    /// directory; created 0700 for the running user by [`ManagedContext::ensure_data_dir`].
    /// Survives `down`; only [`Provider::deprovision`] (the host's `down --volumes`)
    /// removes it.
    pub data_dir: PathBuf,
    /// Where one-shot jobs (initdb, pg_dump...) write their logs (created 0700; the
    /// supervisor's log directory fits). Every line goes through [`ManagedContext::redactor`].
    pub log_dir: PathBuf,
    /// `config`, rendered by the host (templates resolved).
    pub config: BTreeMap<String, serde_json::Value>,
    /// `plan.parameters`, as written.
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// `backups`, as written.
    pub backups: Option<serde_json::Value>,
    /// `secrets`, rendered by the host (the vault's values).
    pub secrets: BTreeMap<String, Secret>,
    /// The host's redaction hook (e.g. the vault's redactor), applied after the context's
    /// own secrets have been masked.
    pub redact: Option<Redact>,
}

impl std::fmt::Debug for ManagedContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedContext")
            .field("service", &self.service)
            .field("data_dir", &self.data_dir)
            .field("log_dir", &self.log_dir)
            .field("config", &self.config)
            .field("parameters", &self.parameters)
            .field("backups", &self.backups)
            .field("secrets", &self.secrets)
            .field("redact", &self.redact.as_ref().map(|_| "<hook>"))
            .finish()
    }
}

impl ManagedContext {
    /// A context with no config, parameters or secrets.
    pub fn new(
        service: impl Into<String>,
        runtime: Arc<Runtime>,
        data_dir: PathBuf,
        log_dir: PathBuf,
    ) -> ManagedContext {
        ManagedContext {
            service: service.into(),
            runtime,
            data_dir,
            log_dir,
            config: BTreeMap::new(),
            parameters: BTreeMap::new(),
            backups: None,
            secrets: BTreeMap::new(),
            redact: None,
        }
    }

    /// The context of a `ci.yml` service: its name, `config`, `plan.parameters` and
    /// `backups` as written, and `secrets` as the host rendered them. A host that allows
    /// templates in `config` values replaces [`ManagedContext::config`] with the rendered
    /// values.
    pub fn from_service(
        service: &Service,
        runtime: Arc<Runtime>,
        data_dir: PathBuf,
        log_dir: PathBuf,
        secrets: BTreeMap<String, Secret>,
    ) -> ManagedContext {
        let mut ctx = ManagedContext::new(service.name.value.clone(), runtime, data_dir, log_dir);
        if let Some(c) = &service.config {
            ctx.config = c
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect();
        }
        if let Some(landscape_spec::Plan::Managed(m)) = service.plan.as_deref() {
            if let Some(p) = &m.parameters {
                ctx.parameters = p
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect();
            }
        }
        ctx.backups = service.backups.as_ref().map(|b| b.value.clone());
        ctx.secrets = secrets;
        ctx
    }

    /// The state directory of the built-in providers (`DATA/state`).
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("state")
    }

    /// Where backups go (`DATA/state/backups`).
    pub fn backup_dir(&self) -> PathBuf {
        self.state_dir().join("backups")
    }

    /// Creates the data directory (and its parents) 0700 for the running user; refuses
    /// one that belongs to another user.
    pub fn ensure_data_dir(&self) -> Result<()> {
        crate::network::private_dir(&self.data_dir).map_err(|e| self.config_error(e.to_string()))
    }

    /// A secret by key; the error names the key and the fix.
    pub fn secret(&self, key: &str) -> Result<&Secret> {
        match self.secrets.get(key) {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.config_error(format!(
                "secrets.{key} is empty; set the vault secret it refers to"
            ))),
            None => Err(self.config_error(format!(
                "secrets.{key} is missing; declare it (e.g. `{key}: ${{{{ vault.MY_SECRET }}}}`) and set the vault secret"
            ))),
        }
    }

    /// A string in `config` (numbers are given as their text).
    pub fn config_str(&self, key: &str) -> Option<String> {
        match self.config.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A redaction hook that masks every secret of this context (longest first) and
    /// then applies the host's [`ManagedContext::redact`].
    pub fn redactor(&self) -> Redact {
        let mut values: Vec<String> = self
            .secrets
            .values()
            .map(|s| s.expose().to_string())
            .filter(|s| s.len() >= 3)
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let host = self.redact.clone();
        Arc::new(move |line: &str| {
            let mut out = line.to_string();
            for v in &values {
                if out.contains(v.as_str()) {
                    out = out.replace(v.as_str(), "[redacted]");
                }
            }
            match &host {
                Some(h) => h(&out),
                None => out,
            }
        })
    }

    /// An [`Error::Config`] for this service.
    pub fn config_error(&self, message: impl Into<String>) -> Error {
        Error::Config {
            service: self.service.clone(),
            message: message.into(),
        }
    }

    pub(crate) fn io_error(&self, what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            service: self.service.clone(),
            what: what.into(),
            source,
        }
    }
}

/// A managed-service provider: validates, provisions, runs (through the supervisor),
/// exports a connection, backs up, restores, deprovisions. Implement it to plug in your
/// own (register it with [`Providers::register`]); the built-in ones are
/// [`Postgres`] and [`Redis`].
///
/// Every operation is idempotent where its meaning allows: `provision` twice returns the
/// same id, `deprovision` of nothing succeeds.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// `provider.name` this provider serves (`postgres`).
    fn name(&self) -> &str;

    /// `provider.schemaVersion` this provider serves (`v1`).
    fn schema_version(&self) -> &str;

    /// Checks the service's `config`, `secrets`, `plan.parameters` and `backups` against
    /// the provider's schema: every problem at once, one positioned diagnostic each
    /// (errors reject the service; warnings, e.g. a parameter that is not enforced, are
    /// shown).
    fn validate(&self, service: &Service) -> Vec<Diagnostic>;

    /// Creates the resource if it does not exist yet and returns its durable id; a second
    /// call returns the same id and changes nothing.
    async fn provision(&self, ctx: &ManagedContext) -> Result<ResourceId>;

    /// How the supervisor runs the server: a service definition with its probe
    /// ([`Probe::Exchange`](crate::Probe::Exchange) for a readiness by the protocol), the
    /// data directory mounted, limits from the plan parameters. `None`: nothing runs in
    /// the landscape (the resource lives elsewhere; [`Provider::connection`] says where).
    async fn service_def(
        &self,
        ctx: &ManagedContext,
        resource: &ResourceId,
    ) -> Result<Option<ServiceDef>>;

    /// How the other services connect.
    async fn connection(&self, ctx: &ManagedContext) -> Result<Connection>;

    /// Writes a backup of the running resource and returns its path (by default: not
    /// supported).
    async fn backup(&self, ctx: &ManagedContext) -> Result<PathBuf> {
        Err(Error::Unsupported {
            service: ctx.service.clone(),
            provider: self.name().to_string(),
            what: "backups".into(),
        })
    }

    /// Restores the running resource from a backup written by [`Provider::backup`] (by
    /// default: not supported).
    async fn restore(&self, ctx: &ManagedContext, backup: &Path) -> Result<()> {
        let _ = backup;
        Err(Error::Unsupported {
            service: ctx.service.clone(),
            provider: self.name().to_string(),
            what: "restores".into(),
        })
    }

    /// Removes the resource and its data (the host stops the service first).
    async fn deprovision(&self, ctx: &ManagedContext) -> Result<()>;
}

/// The providers a host knows, by name and schema version.
#[derive(Clone, Default)]
pub struct Providers {
    by_key: BTreeMap<(String, String), Arc<dyn Provider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.registered()).finish()
    }
}

impl Providers {
    /// An empty registry.
    pub fn new() -> Providers {
        Providers::default()
    }

    /// The built-in providers: `postgres/v1` ([`Postgres`]) and `redis/v1` ([`Redis`]).
    pub fn builtin() -> Providers {
        let mut p = Providers::new();
        p.register(Arc::new(Postgres::new()));
        p.register(Arc::new(Redis::new()));
        p
    }

    /// Registers `provider` under its name and schema version, replacing one registered
    /// there before (a host may override a built-in); returns the replaced one.
    pub fn register(&mut self, provider: Arc<dyn Provider>) -> Option<Arc<dyn Provider>> {
        let key = (
            provider.name().to_string(),
            provider.schema_version().to_string(),
        );
        self.by_key.insert(key, provider)
    }

    /// Every registered provider as `name/version`, sorted.
    pub fn registered(&self) -> Vec<String> {
        self.by_key
            .keys()
            .map(|(n, v)| format!("{n}/{v}"))
            .collect()
    }

    /// The provider registered under `name` and `version`. An empty `version` picks the
    /// only version registered under `name` (and fails when there are several).
    pub fn get(&self, name: &str, version: &str) -> Result<Arc<dyn Provider>> {
        if version.is_empty() {
            let mut found = self.by_key.iter().filter(|((n, _), _)| n == name);
            if let (Some((_, p)), None) = (found.next(), found.next()) {
                return Ok(p.clone());
            }
        } else if let Some(p) = self.by_key.get(&(name.to_string(), version.to_string())) {
            return Ok(p.clone());
        }
        Err(Error::UnknownProvider {
            name: name.to_string(),
            version: version.to_string(),
            registered: self.registered(),
        })
    }

    /// The provider of a Managed Service (`provider.name`, `provider.schemaVersion` or the
    /// legacy `provider.version`).
    pub fn for_service(&self, service: &Service) -> Result<Arc<dyn Provider>> {
        let (name, version) = provider_key(service);
        self.get(
            name.map_or("", |n| n.value.as_str()),
            version.map_or("", |v| v.value.as_str()),
        )
    }

    /// The provider's diagnostics for a Managed Service, or one error positioned at
    /// `provider.name` when no provider fits (listing the registered ones).
    pub fn validate(&self, service: &Service) -> Vec<Diagnostic> {
        match self.for_service(service) {
            Ok(p) => p.validate(service),
            Err(e) => {
                let (name, version) = provider_key(service);
                let span = version
                    .filter(|_| {
                        name.is_some_and(|n| self.by_key.keys().any(|(k, _)| *k == n.value))
                    })
                    .or(name)
                    .map_or(service.name.span, |s| s.span);
                let message = match &e {
                    Error::UnknownProvider { name, version, .. } if version.is_empty() => {
                        format!("service {:?}: no provider {name:?} is registered", service.name.value)
                    }
                    Error::UnknownProvider { name, version, .. } => format!(
                        "service {:?}: no provider {name:?} with schema version {version:?} is registered",
                        service.name.value
                    ),
                    other => other.to_string(),
                };
                vec![
                    Diagnostic::error(codes::UNKNOWN_PROVIDER, span, message).with_help(format!(
                        "registered providers: {}",
                        list_or_none(&self.registered())
                    )),
                ]
            }
        }
    }
}

fn provider_key(
    service: &Service,
) -> (
    Option<&landscape_spec::Spanned<String>>,
    Option<&landscape_spec::Spanned<String>>,
) {
    match &service.provider {
        Some(p) => (
            p.name.as_ref(),
            p.schema_version.as_ref().or(p.version.as_ref()),
        ),
        None => (None, None),
    }
}

// ---------------------------------------------------------------------------------------
// Schemas.

/// The type a schema field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    String,
    /// A number (integer or not).
    Number,
    /// A string or a number (`version: 16` and `version: "16.2"`).
    StringOrNumber,
    /// `true` / `false`.
    Bool,
}

impl Kind {
    fn accepts(self, v: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match self {
            Kind::String => matches!(v, V::String(_)),
            Kind::Number => matches!(v, V::Number(_)),
            Kind::StringOrNumber => matches!(v, V::String(_) | V::Number(_)),
            Kind::Bool => matches!(v, V::Bool(_)),
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::StringOrNumber => "a string or a number",
            Kind::Bool => "true or false",
        }
    }
}

/// One key of a provider's schema.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The key.
    pub name: &'static str,
    /// Its type (ignored for secrets, which are always templates or strings).
    pub kind: Kind,
    /// Whether it must be given.
    pub required: bool,
    /// What it means (shown in the help of a diagnostic).
    pub help: &'static str,
}

/// A provider's schema of `config`, `secrets` and `plan.parameters` — the type checks a
/// provider shares; providers add their own checks of the values.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// `provider/version`, for messages.
    pub provider: &'static str,
    /// `config` keys.
    pub config: &'static [Field],
    /// `secrets` keys.
    pub secrets: &'static [Field],
    /// `plan.parameters` keys.
    pub parameters: &'static [Field],
}

impl Schema {
    /// Unknown keys, wrong types and missing required keys: one diagnostic each,
    /// positioned at the value (a missing key at the service's name).
    pub fn check(&self, service: &Service) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let svc = &service.name;
        let config: Vec<(&String, &serde_json::Value, Span)> = service
            .config
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k, &v.value, v.span))
            .collect();
        self.check_section("config", self.config, &config, svc, true, &mut out);
        // Secrets are templates (or literal strings): only their keys are checked.
        let secrets: Vec<(&String, &serde_json::Value, Span)> = service
            .secrets
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k, &serde_json::Value::Null, v.span))
            .collect();
        self.check_section("secrets", self.secrets, &secrets, svc, false, &mut out);
        let params: Vec<(&String, &serde_json::Value, Span)> = match service.plan.as_deref() {
            Some(landscape_spec::Plan::Managed(m)) => m
                .parameters
                .iter()
                .flat_map(|p| p.iter())
                .map(|(k, v)| (k, &v.value, v.span))
                .collect(),
            _ => Vec::new(),
        };
        self.check_section(
            "plan.parameters",
            self.parameters,
            &params,
            svc,
            true,
            &mut out,
        );
        out
    }

    fn check_section(
        &self,
        section: &str,
        fields: &[Field],
        given: &[(&String, &serde_json::Value, Span)],
        svc: &landscape_spec::Spanned<String>,
        typed: bool,
        out: &mut Vec<Diagnostic>,
    ) {
        let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        for (key, value, span) in given {
            match fields.iter().find(|f| f.name == key.as_str()) {
                None => {
                    let mut d =
                        Diagnostic::error(
                            codes::UNKNOWN_KEY,
                            *span,
                            format!(
                            "service {:?}: {} does not know {section}.{key}; expected one of {}",
                            svc.value,
                            self.provider,
                            if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
                        ),
                        );
                    d = match closest(key, &names) {
                        Some(c) => d.with_help(format!("did you mean `{c}`?")),
                        None => d.with_help(format!("remove {section}.{key}")),
                    };
                    out.push(d);
                }
                Some(f) if typed && !f.kind.accepts(value) => out.push(
                    Diagnostic::error(
                        codes::BAD_VALUE,
                        *span,
                        format!(
                            "service {:?}: {section}.{key} must be {}, not {}",
                            svc.value,
                            f.kind.describe(),
                            json_type(value)
                        ),
                    )
                    .with_help(f.help),
                ),
                Some(_) => {}
            }
        }
        for f in fields.iter().filter(|f| f.required) {
            if !given.iter().any(|(k, _, _)| k.as_str() == f.name) {
                out.push(
                    Diagnostic::error(
                        codes::MISSING_KEY,
                        svc.span,
                        format!(
                            "service {:?}: {} needs {section}.{}",
                            svc.value, self.provider, f.name
                        ),
                    )
                    .with_help(f.help),
                );
            }
        }
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    use serde_json::Value as V;
    match v {
        V::Null => "null",
        V::Bool(_) => "a boolean",
        V::Number(_) => "a number",
        V::String(_) => "a string",
        V::Array(_) => "a list",
        V::Object(_) => "a map",
    }
}

/// The known name closest to `key` (edit distance at most 2, or the same in lower case).
fn closest<'a>(key: &str, names: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    names
        .iter()
        .map(|n| {
            let d = if n.eq_ignore_ascii_case(key) {
                0
            } else {
                distance(key, n)
            };
            (d, *n)
        })
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| n)
}

/// Limits from `plan.parameters` (`cpu` in cores, `memory` in MiB); `None` without
/// either. The pids limit follows the runtime's plan rule ([`crate::PIDS_PER_GIB`]).
pub fn limits_from_parameters(
    parameters: &BTreeMap<String, serde_json::Value>,
) -> Option<crate::Limits> {
    let cpu = parameters
        .get("cpu")
        .and_then(serde_json::Value::as_f64)
        .filter(|c| *c > 0.0 && c.is_finite());
    let memory = parameters
        .get("memory")
        .and_then(serde_json::Value::as_f64)
        .filter(|m| *m > 0.0 && m.is_finite())
        .map(|m| (m * 1024.0 * 1024.0) as u64);
    if cpu.is_none() && memory.is_none() {
        return None;
    }
    let gib = memory.unwrap_or(0).div_ceil(1 << 30);
    Some(crate::Limits {
        memory_bytes: memory,
        cpu_cores: cpu,
        pids: Some((gib * crate::PIDS_PER_GIB).max(crate::MIN_PIDS)),
    })
}

/// The checks of `cpu`, `memory` and `storage` every built-in provider shares: positive
/// numbers; `storage` accepted but reported as not enforced (a warning).
pub(crate) fn check_parameters(provider: &str, service: &Service, out: &mut Vec<Diagnostic>) {
    let Some(landscape_spec::Plan::Managed(m)) = service.plan.as_deref() else {
        return;
    };
    for (key, v) in m.parameters.iter().flat_map(|p| p.iter()) {
        let Some(n) = v.value.as_f64() else { continue };
        match key.as_str() {
            "cpu" | "memory" if n <= 0.0 => out.push(Diagnostic::error(
                codes::BAD_VALUE,
                v.span,
                format!(
                    "service {:?}: plan.parameters.{key} must be greater than 0 ({})",
                    service.name.value,
                    if key == "cpu" { "cores" } else { "MiB" }
                ),
            )),
            "storage" => out.push(
                Diagnostic::warning(
                    codes::NOT_ENFORCED,
                    v.span,
                    format!(
                        "service {:?}: plan.parameters.storage ({n} MiB) is not enforced locally; the {provider} data directory may grow beyond it",
                        service.name.value
                    ),
                )
                .with_help("cpu and memory become cgroup limits where the runtime has cgroups; storage has no local equivalent"),
            ),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Backups on a schedule.

/// When backups are taken and how many are kept (from `backups` of a service):
///
/// ```yaml
/// backups:
///   schedule: "@daily"   # @hourly, @daily, @weekly, or an interval: 30m, 6h, 2d
///   keep: 7              # newest backups kept; default 7
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupPolicy {
    /// Time between two backups.
    pub every: Duration,
    /// Backups kept (the oldest beyond this are removed after each backup).
    pub keep: usize,
}

impl BackupPolicy {
    /// Parses a `backups` value; the error says what is wrong and what is accepted.
    pub fn parse(value: &serde_json::Value) -> std::result::Result<BackupPolicy, String> {
        let obj = value.as_object().ok_or_else(|| {
            format!(
                "backups must be a map like {{schedule: \"@daily\", keep: 7}}, not {}",
                json_type(value)
            )
        })?;
        for k in obj.keys() {
            if k != "schedule" && k != "keep" {
                return Err(format!(
                    "backups.{k} is not known; expected one of schedule, keep"
                ));
            }
        }
        let schedule = match obj.get("schedule") {
            Some(serde_json::Value::String(s)) => s,
            Some(other) => {
                return Err(format!(
                    "backups.schedule must be a string, not {}",
                    json_type(other)
                ))
            }
            None => return Err(
                "backups.schedule is missing; give @hourly, @daily, @weekly or an interval like 6h"
                    .into(),
            ),
        };
        let every = parse_interval(schedule)?;
        let keep = match obj.get("keep") {
            None => 7,
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err("backups.keep must be a whole number of at least 1".into()),
            },
        };
        Ok(BackupPolicy { every, keep })
    }

    /// The policy of a context (`None`: the service declares no backups).
    pub fn from_context(ctx: &ManagedContext) -> Result<Option<BackupPolicy>> {
        ctx.backups
            .as_ref()
            .map(BackupPolicy::parse)
            .transpose()
            .map_err(|m| ctx.config_error(m))
    }
}

fn parse_interval(s: &str) -> std::result::Result<Duration, String> {
    let bad = || {
        format!(
            "backups.schedule {s:?} is not understood; give @hourly, @daily, @weekly or an interval like 30m, 6h, 2d (cron expressions are not supported)"
        )
    };
    let t = s.trim();
    let hour = 3600;
    let secs = match t {
        "@hourly" => hour,
        "@daily" | "@midnight" => 24 * hour,
        "@weekly" => 7 * 24 * hour,
        _ => {
            let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (n, unit) = t.split_at(split);
            let n: u64 = n.parse().map_err(|_| bad())?;
            let mul = match unit {
                "s" => 1,
                "m" => 60,
                "h" => hour,
                "d" => 24 * hour,
                _ => return Err(bad()),
            };
            n.checked_mul(mul).filter(|v| *v > 0).ok_or_else(bad)?
        }
    };
    Ok(Duration::from_secs(secs))
}

/// The `backups` check every built-in provider that backs up shares.
pub(crate) fn check_backups(service: &Service, out: &mut Vec<Diagnostic>) {
    if let Some(b) = &service.backups {
        if let Err(m) = BackupPolicy::parse(&b.value) {
            out.push(Diagnostic::error(
                codes::BAD_VALUE,
                b.span,
                format!("service {:?}: {m}", service.name.value),
            ));
        }
    }
}

/// Takes backups on `policy`'s schedule, forever: the first one `policy.every` after the
/// newest backup in [`ManagedContext::backup_dir`] (or after the start when there is
/// none), then every `policy.every`; after each, only the newest `policy.keep` are kept.
/// A failed backup is logged (`tracing`) and tried again after at most 5 minutes. The host
/// spawns it (`tokio::spawn`) while the service runs and aborts the task on `down`.
pub async fn run_backups(provider: Arc<dyn Provider>, ctx: ManagedContext, policy: BackupPolicy) {
    let dir = ctx.backup_dir();
    let newest = blocking_plain(move || newest_backup(&dir)).await.flatten();
    let now = SystemTime::now();
    let mut wait = match newest {
        Some(t) => (t + policy.every)
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
        None => policy.every,
    };
    loop {
        tokio::time::sleep(wait).await;
        match provider.backup(&ctx).await {
            Ok(path) => {
                tracing::info!(service = %ctx.service, "backup written to {}", path.display());
                let (dir, keep) = (ctx.backup_dir(), policy.keep);
                let pruned = blocking_plain(move || prune_backups(&dir, keep)).await;
                if let Some(Err(e)) = pruned {
                    tracing::warn!(service = %ctx.service, "prune old backups: {e}");
                }
                wait = policy.every;
            }
            Err(e) => {
                tracing::warn!(service = %ctx.service, "scheduled backup failed: {e}");
                wait = policy.every.min(Duration::from_secs(300));
            }
        }
    }
}

/// The finished backups in `dir` (not the `.partial` ones), oldest first.
pub fn list_backups(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_file() && p.extension().is_some_and(|x| x != "partial") {
            let t = e.metadata()?.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((t, p));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

fn newest_backup(dir: &Path) -> Option<SystemTime> {
    let newest = list_backups(dir).ok()?.pop()?;
    std::fs::metadata(newest).ok()?.modified().ok()
}

/// Removes all but the newest `keep` backups in `dir`.
pub fn prune_backups(dir: &Path, keep: usize) -> std::io::Result<()> {
    let all = list_backups(dir)?;
    let extra = all.len().saturating_sub(keep);
    for p in &all[..extra] {
        std::fs::remove_file(p)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Helpers of the built-in providers.

/// Runs a blocking closure on tokio's blocking pool (panics propagate).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::Runtime(crate::Error::Helper(format!(
            "provider task cancelled: {e}"
        )))),
    }
}

async fn blocking_plain<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// What a built-in provider keeps in `DATA/resource.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceFile {
    pub id: ResourceId,
    pub provider: String,
    pub schema_version: String,
    pub created: String,
    #[serde(default)]
    pub detail: serde_json::Value,
}

impl ResourceFile {
    pub(crate) fn path(ctx: &ManagedContext) -> PathBuf {
        ctx.data_dir.join("resource.json")
    }

    /// The resource of `provider` in the data directory; an error when the directory
    /// belongs to another provider.
    pub(crate) fn read(ctx: &ManagedContext, provider: &str) -> Result<Option<ResourceFile>> {
        let path = ResourceFile::path(ctx);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ctx.io_error(format!("read {}", path.display()), e)),
        };
        let rec: ResourceFile = serde_json::from_slice(&text).map_err(|e| {
            ctx.config_error(format!(
                "{} is damaged ({e}); restore it or deprovision the service",
                path.display()
            ))
        })?;
        if rec.provider != provider {
            return Err(ctx.config_error(format!(
                "the data directory {} holds a {:?} resource, not {provider:?}; use another data directory or deprovision it first",
                ctx.data_dir.display(),
                rec.provider
            )));
        }
        Ok(Some(rec))
    }

    /// Writes the record atomically (0600).
    pub(crate) fn write(&self, ctx: &ManagedContext) -> Result<()> {
        let path = ResourceFile::path(ctx);
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| ctx.config_error(format!("encode the resource record: {e}")))?;
        let tmp = path.with_extension("json.tmp");
        write_private(&tmp, &text)
            .map_err(|e| ctx.io_error(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| ctx.io_error(format!("rename {} into place", tmp.display()), e))
    }

    pub(crate) fn new(provider: &str, version: &str, detail: serde_json::Value) -> ResourceFile {
        ResourceFile {
            id: ResourceId(format!("{provider}-{}", random_hex(8))),
            provider: provider.into(),
            schema_version: version.into(),
            created: crate::logs::rfc3339(SystemTime::now()),
            detail,
        }
    }
}

/// Writes `bytes` to a new file of mode 0600 (replacing an old one), synced.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::File::options()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `n` random bytes from the kernel, hex.
pub(crate) fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read as _;
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if ok.is_err() {
        // Not expected on Linux; ids stay unique through time and pid.
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            ^ u64::from(std::process::id()).rotate_left(32);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 8) * 8)) as u8;
        }
    }
    buf
}

/// The uid and gid of a system user of the host (`/etc/passwd`, which instances on the
/// host base share): the server's container user.
pub(crate) fn system_user(ctx: &ManagedContext, name: &str, package: &str) -> Result<User> {
    let text =
        std::fs::read_to_string("/etc/passwd").map_err(|e| ctx.io_error("read /etc/passwd", e))?;
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let (n, _, uid, gid) = (f.next()?, f.next()?, f.next()?, f.next()?);
            (n == name).then(|| {
                Some(User {
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                })
            })?
        })
        .ok_or_else(|| {
            ctx.config_error(format!(
                "the host has no {name:?} user, which the server runs as; install Debian's {package} package (it creates the user)"
            ))
        })
}

/// Creates `path` (a directory, 0700) if needed and hands it to the container user `user`.
pub(crate) fn owned_dir(ctx: &ManagedContext, path: &Path, user: User) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !path.is_dir() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| ctx.io_error(format!("create {}", path.display()), e))?;
        ctx.runtime.adopt_dir(path, user)?;
    }
    Ok(())
}

/// Writes a 0600 file owned by the container user `user`.
pub(crate) fn owned_file(
    ctx: &ManagedContext,
    path: &Path,
    bytes: &[u8],
    user: User,
) -> Result<()> {
    write_private(path, bytes).map_err(|e| ctx.io_error(format!("write {}", path.display()), e))?;
    ctx.runtime.adopt_dir(path, user)?;
    Ok(())
}

/// Removes the listed files when dropped (secrets handed to a job).
pub(crate) struct RemoveOnDrop(pub Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A one-shot instance of a provider (initdb, pg_dump, ...): `/bin/sh -c script` as the
/// server's user with the state directory mounted, no network (it talks to the server
/// through the unix socket in the state directory).
pub(crate) struct Job {
    pub name: &'static str,
    pub script: String,
    pub user: User,
    pub mounts: Vec<BindMount>,
}

/// Runs `job` to its end (blocking); its output goes, redacted, to a log file in
/// [`ManagedContext::log_dir`]. A failure names the job, its exit and its last lines.
pub(crate) fn run_job(ctx: &ManagedContext, job: Job) -> Result<()> {
    let mut spec = InstanceSpec::new(
        format!("{}-{}", ctx.service, job.name),
        Process::shell(job.script),
    );
    spec.user = job.user;
    spec.mounts = job.mounts;
    let mut logs = LogConfig::new(&ctx.log_dir);
    logs.redact = Some(ctx.redactor());
    let mut inst = ctx.runtime.spawn(&spec, Output::Logs(logs))?;
    let exit = inst.wait()?;
    if exit.success() {
        return Ok(());
    }
    let last_lines = inst
        .log_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| {
            let lines: Vec<String> = t
                .lines()
                .filter_map(crate::logs::parse_line)
                .map(|l| l.text)
                .collect();
            let from = lines.len().saturating_sub(10);
            lines[from..].to_vec()
        })
        .unwrap_or_default();
    let mut how = match (exit.code, exit.signal) {
        (_, Some(s)) => format!("killed by signal {s}"),
        (Some(c), None) => format!("exit code {c}"),
        (None, None) => "ended".into(),
    };
    if let Some(e) = &exit.error {
        how.push_str(": ");
        how.push_str(e);
    }
    Err(Error::Job {
        service: ctx.service.clone(),
        job: job.name.to_string(),
        exit: how,
        last_lines,
    })
}

/// The state directory mounted at [`STATE_MOUNT`].
pub(crate) fn state_mount(ctx: &ManagedContext) -> BindMount {
    BindMount {
        source: ctx.state_dir(),
        target: STATE_MOUNT.to_string(),
        read_only: false,
    }
}

/// Removes the data directory of a `provider` resource; nothing to do when it is gone.
/// Refuses a non-empty directory that is not that provider's (a mistaken path).
pub(crate) fn remove_data_dir(ctx: &ManagedContext, provider: &str) -> Result<()> {
    let dir = &ctx.data_dir;
    if !dir.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir)
        .map_err(|e| ctx.io_error(format!("read {}", dir.display()), e))?
        .next()
        .is_none();
    if !empty && ResourceFile::read(ctx, provider)?.is_none() && !ctx.state_dir().exists() {
        return Err(ctx.config_error(format!(
            "{} holds no {provider} resource (no resource.json); not removing it — check the data directory path",
            dir.display()
        )));
    }
    std::fs::remove_dir_all(dir).map_err(|e| ctx.io_error(format!("remove {}", dir.display()), e))
}

/// A file name for a backup taken now: `<stem>-<UTC time>.<ext>`.
pub(crate) fn backup_name(stem: &str, ext: &str) -> String {
    let t: String = crate::logs::rfc3339(SystemTime::now())
        .chars()
        .filter(|c| *c != ':' && *c != '-')
        .collect();
    format!("{stem}-{t}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-distinct");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        let c = Connection {
            scheme: "postgres".into(),
            host: "db".into(),
            port: 5432,
            user: "app".into(),
            database: Some("app".into()),
            password: s.clone(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            c.url().expose(),
            "postgres://app:hunter2-distinct@db:5432/app"
        );
        let odd = Connection {
            password: Secret::new("a b@c/d"),
            ..c.clone()
        };
        assert_eq!(
            odd.url().expose(),
            "postgres://app:a%20b%40c%2Fd@db:5432/app"
        );
        let env = c.env("PG");
        assert!(env.contains(&("PG_HOST".into(), "db".into())));
        assert!(env.contains(&("PG_DATABASE".into(), "app".into())));
    }

    #[test]
    fn schedules_parse() {
        let p = |v: serde_json::Value| BackupPolicy::parse(&v);
        assert_eq!(
            p(serde_json::json!({"schedule": "@daily"})).unwrap(),
            BackupPolicy {
                every: Duration::from_secs(86400),
                keep: 7
            }
        );
        assert_eq!(
            p(serde_json::json!({"schedule": "6h", "keep": 2})).unwrap(),
            BackupPolicy {
                every: Duration::from_secs(6 * 3600),
                keep: 2
            }
        );
        assert!(p(serde_json::json!({"schedule": "0 3 * * *"}))
            .unwrap_err()
            .contains("cron"));
        assert!(p(serde_json::json!({"schedule": "1h", "kept": 2}))
            .unwrap_err()
            .contains("backups.kept"));
        assert!(p(serde_json::json!({"schedule": "0m"})).is_err());
        assert!(p(serde_json::json!({"schedule": "1h", "keep": 0})).is_err());
        assert!(p(serde_json::json!("daily")).is_err());
    }

    #[test]
    fn closest_names() {
        let names = ["version", "userName", "databaseName"];
        assert_eq!(closest("userNmae", &names), Some("userName"));
        assert_eq!(closest("username", &names), Some("userName"));
        assert_eq!(closest("colour", &names), None);
    }

    #[test]
    fn limits_from_mib() {
        let mut p = BTreeMap::new();
        assert_eq!(limits_from_parameters(&p), None);
        p.insert("memory".to_string(), serde_json::json!(512));
        p.insert("cpu".to_string(), serde_json::json!(1));
        p.insert("storage".to_string(), serde_json::json!(2048));
        let l = limits_from_parameters(&p).unwrap();
        assert_eq!(l.memory_bytes, Some(512 << 20));
        assert_eq!(l.cpu_cores, Some(1.0));
        assert_eq!(l.pids, Some(crate::PIDS_PER_GIB.max(crate::MIN_PIDS)));
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("landscape-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = SystemTime::now() - Duration::from_secs(100);
        for i in 0..4u64 {
            let p = dir.join(format!("db-{i}.dump"));
            std::fs::write(&p, b"x").unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(base + Duration::from_secs(i)).unwrap();
        }
        std::fs::write(dir.join("db-9.dump.partial"), b"x").unwrap();
        prune_backups(&dir, 2).unwrap();
        let left: Vec<String> = list_backups(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["db-2.dump", "db-3.dump"]);
        assert!(dir.join("db-9.dump.partial").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_exchange_probe_matches_prefixes() {
        struct Peer(std::io::Cursor<Vec<u8>>, Vec<u8>);
        impl std::io::Read for Peer {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                // One byte at a time: prefixes must be matched across reads.
                let n = b.len().min(1);
                self.0.read(&mut b[..n])
            }
        }
        impl std::io::Write for Peer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.1.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let probe = |reply: &[u8], expect: &[&[u8]]| {
            let mut p = Peer(std::io::Cursor::new(reply.to_vec()), Vec::new());
            let expect: Vec<Vec<u8>> = expect.iter().map(|e| e.to_vec()).collect();
            let r = crate::supervisor::exchange(
                &mut p,
                1,
                b"PING\r\n",
                &expect,
                Duration::from_secs(1),
            );
            assert_eq!(p.1, b"PING\r\n");
            r
        };
        assert!(probe(b"+PONG\r\n", &[b"+PONG", b"-NOAUTH"]).is_ok());
        assert!(probe(
            b"-NOAUTH Authentication required.\r\n",
            &[b"+PONG", b"-NOAUTH"]
        )
        .is_ok());
        // (The test peer hands out one byte per read: the reply is known not to match
        // after two.)
        let e = probe(b"-LOADING Redis is loading\r\n", &[b"+PONG", b"-NOAUTH"]).unwrap_err();
        assert!(e.contains("\"-L\""), "{e}");
        assert!(probe(b"+PO", &[b"+PONG"]).unwrap_err().contains("closed"));
        assert!(probe(b"E\0\0\0\x10SFATAL", &[b"R"]).is_err());
        assert!(probe(b"R\0\0\0\x17", &[b"R"]).is_ok());
        assert!(probe(b"anything", &[]).is_ok(), "no prefixes: any reply");
        assert!(probe(b"", &[]).is_err());
    }
}
