//! The logic of `landscape vault` (the example CLI only parses arguments and calls [`run`]).
//!
//! Everything goes through explicit streams and an environment lookup, so tests drive it
//! in-process. Exit codes: 0 ok; 1 the thing checked failed (unresolved references, tampered
//! audit log or store, secret not found, check-and-set conflict); 2 usage, key or I/O errors.

use crate::audit::{AuditAction, AuditEvent, AuditLog};
use crate::error::Error;
use crate::file::{FileBackend, FileOptions, MasterKey};
#[cfg(feature = "openbao")]
use crate::openbao::OpenBaoBackend;
use crate::resolve::{self, Context, ProblemKind, ResolveError};
use crate::secret::SecretValue;
use crate::vault::{AccessPolicy, Vault};
use crate::KdfParams;
use std::io::{Read, Write};
use std::path::PathBuf;

/// The environment variable holding the passphrase of the embedded store.
pub const ENV_PASSPHRASE: &str = "LANDSCAPE_VAULT_PASSPHRASE";
/// The environment variable holding the new passphrase for `rotate-key`.
pub const ENV_NEW_PASSPHRASE: &str = "LANDSCAPE_VAULT_NEW_PASSPHRASE";
/// The environment variable holding the OpenBao token.
pub const ENV_TOKEN: &str = "BAO_TOKEN";
/// Overrides the default store directory.
pub const ENV_DIR: &str = "LANDSCAPE_VAULT_DIR";
/// Argon2id parameters for *new* stores, `M_KIB,T,P` (e.g. for small machines and tests).
pub const ENV_KDF: &str = "LANDSCAPE_VAULT_KDF";

/// How long a writer waits for the store lock, in milliseconds (default 10000).
pub const ENV_LOCK_TIMEOUT: &str = "LANDSCAPE_VAULT_LOCK_TIMEOUT_MS";

/// Which backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// The embedded encrypted store.
    #[default]
    File,
    /// An OpenBao server (KV v2).
    OpenBao,
}

/// Options shared by all subcommands.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Store directory (file backend). Default: `$LANDSCAPE_VAULT_DIR`, else
    /// `$XDG_DATA_HOME/landscape/vault`, else `~/.local/share/landscape/vault`.
    pub store: Option<PathBuf>,
    /// The scope (default `default`).
    pub scope: Option<String>,
    /// Shared scopes this scope may read.
    pub shared: Vec<String>,
    /// The backend.
    pub backend: BackendKind,
    /// OpenBao address (default `$BAO_ADDR`, else `http://127.0.0.1:8200`).
    pub addr: Option<String>,
    /// OpenBao KV v2 mount (default `secret`).
    pub mount: Option<String>,
    /// Key file instead of a passphrase (file backend).
    pub key_file: Option<PathBuf>,
    /// Who acts, for the audit log (default `$USER`).
    pub actor: Option<String>,
}

/// A subcommand.
#[derive(Debug, Clone)]
pub enum Command {
    /// Reads a value from stdin (one trailing newline dropped) and stores it.
    Set {
        /// The secret's name.
        name: String,
        /// Check-and-set: the version expected now (0 = must not exist).
        cas: Option<u64>,
    },
    /// Prints a value (and a newline) to stdout.
    Get {
        /// The secret's name (`SCOPE/NAME` for a shared scope).
        name: String,
        /// A specific kept version.
        version: Option<u64>,
    },
    /// Lists names and versions.
    List,
    /// Deletes a secret.
    Rm {
        /// The secret's name.
        name: String,
    },
    /// Rotates the data key (re-encrypts everything), or with a new key the master key.
    RotateKey {
        /// New key file (created with 32 random bytes if absent). Else `$LANDSCAPE_VAULT_NEW_PASSPHRASE`
        /// if set; else only the data key is rotated.
        new_key_file: Option<PathBuf>,
    },
    /// Verifies the audit log's HMAC chain.
    AuditVerify,
    /// Checks that every vault reference in a ci.yml resolves.
    Check {
        /// The ci.yml.
        file: PathBuf,
    },
}

/// The process's streams and environment.
pub struct Io<'a> {
    /// Standard input (values for `set`).
    pub stdin: &'a mut dyn Read,
    /// Standard output.
    pub stdout: &'a mut dyn Write,
    /// Standard error.
    pub stderr: &'a mut dyn Write,
    /// Environment lookup.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

enum Opened {
    File(FileBackend),
    // Boxed: the HTTP client makes it much larger than the file backend.
    #[cfg(feature = "openbao")]
    Bao(Box<OpenBaoBackend>),
}

impl Opened {
    /// A vault over the opened backend.
    fn vault(&self) -> Vault {
        match self {
            Opened::File(b) => Vault::new(b.clone()),
            #[cfg(feature = "openbao")]
            Opened::Bao(b) => Vault::new((**b).clone()),
        }
    }

    /// The embedded store, where that is the backend.
    fn file(&self) -> Option<&FileBackend> {
        match self {
            Opened::File(b) => Some(b),
            #[cfg(feature = "openbao")]
            Opened::Bao(_) => None,
        }
    }
}

struct Fail(u8, String);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::NotFound { .. }
            | Error::Conflict { .. }
            | Error::Tampered { .. }
            | Error::Corrupted { .. }
            | Error::AuditTampered { .. }
            | Error::Denied { .. } => 1,
            _ => 2,
        };
        Fail(code, e.to_string())
    }
}

fn usage(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

/// Runs one subcommand; returns the exit code. Errors go to `io.stderr`, never with values.
pub fn run(opts: &Options, cmd: &Command, io: &mut Io<'_>) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                io.stderr,
                "landscape vault: cannot start the async runtime: {e}"
            );
            return 2;
        }
    };
    match rt.block_on(run_async(opts, cmd, io)) {
        Ok(code) => code,
        Err(Fail(code, msg)) => {
            let _ = writeln!(io.stderr, "landscape vault: {msg}");
            code
        }
    }
}

fn default_store(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, Fail> {
    if let Some(d) = env(ENV_DIR).filter(|s| !s.is_empty()) {
        return Ok(d.into());
    }
    if let Some(d) = env("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
        return Ok(PathBuf::from(d).join("landscape/vault"));
    }
    if let Some(h) = env("HOME").filter(|s| !s.is_empty()) {
        return Ok(PathBuf::from(h).join(".local/share/landscape/vault"));
    }
    Err(usage(
        "no store directory: pass --store DIR or set LANDSCAPE_VAULT_DIR",
    ))
}

fn kdf_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<KdfParams, Fail> {
    let Some(s) = env(ENV_KDF) else {
        return Ok(KdfParams::default());
    };
    let n: Vec<u32> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    match n[..] {
        [m_kib, t, p] => Ok(KdfParams { m_kib, t, p }),
        _ => Err(usage(format!(
            "{ENV_KDF} must be M_KIB,T,P (e.g. 19456,2,1)"
        ))),
    }
}

/// The default key file: `$XDG_DATA_HOME/landscape/vault.key`, else
/// `~/.local/share/landscape/vault.key`. It is used when neither a key file is given nor
/// [`ENV_PASSPHRASE`] is set, and `vault set` creates it (32 random bytes, 0600) when
/// neither is and it does not exist yet.
pub fn default_key_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("XDG_DATA_HOME")
        .filter(|s| !s.is_empty())
        .map(|d| PathBuf::from(d).join("landscape/vault.key"))
        .or_else(|| {
            env("HOME")
                .filter(|s| !s.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share/landscape/vault.key"))
        })
}

/// [`ENV_PASSPHRASE`], when set and not empty.
fn passphrase(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    env(ENV_PASSPHRASE).filter(|p| !p.is_empty())
}

/// The embedded store's directory: `--store`, else [`default_store`].
fn store_root(opts: &Options, env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, Fail> {
    match &opts.store {
        Some(s) => Ok(s.clone()),
        None => default_store(env),
    }
}

fn master_key(opts: &Options, env: &dyn Fn(&str) -> Option<String>) -> Result<MasterKey, Fail> {
    if let Some(k) = &opts.key_file {
        return Ok(MasterKey::from_key_file(k)?);
    }
    if let Some(p) = passphrase(env) {
        return Ok(MasterKey::passphrase(SecretValue::from_string(p)));
    }
    match default_key_file(env) {
        Some(k) if k.is_file() => Ok(MasterKey::from_key_file(&k)?),
        k => Err(usage(format!(
            "no master key: set {ENV_PASSPHRASE} or pass --key-file FILE; on a machine with no \
             store yet, the first `landscape vault set NAME` creates the key file {}",
            k.map_or_else(
                || "~/.local/share/landscape/vault.key".to_string(),
                |k| k.display().to_string()
            )
        ))),
    }
}

/// `vault set` on a machine with no master key yet: creates the default key file, and
/// says so on `stderr` (where it is and that the secrets are lost without it).
fn create_default_key(
    opts: &Options,
    env: &dyn Fn(&str) -> Option<String>,
    stderr: &mut dyn Write,
) -> Result<(), Fail> {
    if opts.key_file.is_some() || passphrase(env).is_some() || opts.backend != BackendKind::File {
        return Ok(());
    }
    let Some(k) = default_key_file(env) else {
        return Ok(());
    };
    if k.exists() {
        return Ok(());
    }
    // A store that exists already was made under another key (a passphrase not set in
    // this shell, say): a new key would not open it, so none is made.
    let root = store_root(opts, env)?;
    if std::fs::read_dir(&root).is_ok_and(|mut d| d.next().is_some()) {
        return Ok(());
    }
    let Some(dir) = k.parent() else {
        return Ok(());
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Fail(2, format!("cannot create {}: {e}", dir.display())))?;
    }
    // Written whole under a temporary name, then linked into place: no reader sees a
    // partial key, and of two first `set`s at once one key wins and both use it.
    let tmp = dir.join(format!(".vault.key.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    MasterKey::generate_key_file(&tmp)?;
    let linked = std::fs::hard_link(&tmp, &k);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Fail(2, format!("cannot create {}: {e}", k.display()))),
    }
    writeln!(
        stderr,
        "landscape vault: created the key file {} (0600); the secrets cannot be read without it, so back it up",
        k.display()
    )
    .map_err(out_err)
}

fn open(opts: &Options, env: &dyn Fn(&str) -> Option<String>) -> Result<Opened, Fail> {
    match opts.backend {
        BackendKind::File => {
            let root = store_root(opts, env)?;
            let mut fo = FileOptions {
                kdf: kdf_from_env(env)?,
                ..Default::default()
            };
            if let Some(ms) = env(ENV_LOCK_TIMEOUT) {
                let ms: u64 = ms.trim().parse().map_err(|_| {
                    usage(format!(
                        "{ENV_LOCK_TIMEOUT} must be a number of milliseconds"
                    ))
                })?;
                fo.lock_timeout = std::time::Duration::from_millis(ms);
            }
            Ok(Opened::File(FileBackend::with_options(
                root,
                master_key(opts, env)?,
                fo,
            )?))
        }
        #[cfg(not(feature = "openbao"))]
        BackendKind::OpenBao => Err(usage(
            "the OpenBao backend needs the `openbao` feature of landscape-vault (on by default); this build has only the embedded store",
        )),
        #[cfg(feature = "openbao")]
        BackendKind::OpenBao => {
            let addr = opts
                .addr
                .clone()
                .or_else(|| env("BAO_ADDR"))
                .unwrap_or_else(|| "http://127.0.0.1:8200".to_string());
            let token = env(ENV_TOKEN)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| usage(format!("no OpenBao token: set {ENV_TOKEN}")))?;
            let mut b = OpenBaoBackend::new(&addr, SecretValue::from_string(token))?;
            if let Some(m) = &opts.mount {
                b = b.with_mount(m);
            }
            Ok(Opened::Bao(Box::new(b)))
        }
    }
}

/// Opens the vault `opts` describe, with the same defaults and environment variables as
/// `landscape vault` (for hosts such as `landscape up` that resolve a ci.yml's secrets);
/// returns it with the scope to resolve in. The error is one line naming what is missing.
pub fn open_vault(opts: &Options) -> Result<(Vault, String), String> {
    let env = |k: &str| std::env::var(k).ok();
    let scope = opts.scope.clone().unwrap_or_else(|| "default".to_string());
    crate::validate_scope(&scope).map_err(|e| e.to_string())?;
    let opened = open(opts, &env).map_err(|f| f.1)?;
    let mut policy = AccessPolicy::new();
    for s in &opts.shared {
        crate::validate_scope(s).map_err(|e| e.to_string())?;
        policy = policy.share(&scope, s);
    }
    let vault = opened
        .vault()
        .with_actor(actor(opts, &env))
        .with_policy(policy);
    Ok((vault, scope))
}

fn actor(opts: &Options, env: &dyn Fn(&str) -> Option<String>) -> String {
    opts.actor
        .clone()
        .or_else(|| env("USER").filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid:{}", rustix::process::getuid().as_raw()))
}

fn out_err(e: std::io::Error) -> Fail {
    Fail(2, format!("cannot write output: {e}"))
}

async fn run_async(opts: &Options, cmd: &Command, io: &mut Io<'_>) -> Result<u8, Fail> {
    let env = io.env;
    let scope = opts.scope.clone().unwrap_or_else(|| "default".to_string());
    crate::validate_scope(&scope)?;
    if matches!(cmd, Command::Set { .. }) {
        create_default_key(opts, env, io.stderr)?;
    }
    let opened = open(opts, env)?;
    let mut policy = AccessPolicy::new();
    for s in &opts.shared {
        crate::validate_scope(s)?;
        policy = policy.share(&scope, s);
    }
    let vault = opened
        .vault()
        .with_actor(actor(opts, env))
        .with_policy(policy);
    let file_backend = |what: &str| {
        opened.file().cloned().ok_or_else(|| {
            usage(format!(
                "{what} is only for the embedded store; OpenBao has its own"
            ))
        })
    };
    let missing_store = |b: &FileBackend| {
        if b.exists(&scope) {
            Ok(())
        } else {
            Err(Fail::from(Error::StoreMissing {
                scope: scope.clone(),
                store: b.store_path(&scope),
            }))
        }
    };

    match cmd {
        Command::Set { name, cas } => {
            let mut raw = Vec::new();
            io.stdin
                .read_to_end(&mut raw)
                .map_err(|e| Fail(2, format!("cannot read the value from stdin: {e}")))?;
            let mut value = SecretValue::new(raw);
            let trimmed = value
                .expose()
                .strip_suffix(b"\n")
                .map(|v| v.strip_suffix(b"\r").unwrap_or(v).len());
            if let Some(n) = trimmed {
                value = SecretValue::new(value.expose()[..n].to_vec());
            }
            if value.is_empty() {
                return Err(usage("the value is empty: pipe it on stdin, e.g. `printf %s \"$PW\" | landscape vault set NAME`"));
            }
            let out = vault.put(&scope, name, value, *cas).await?;
            for w in &out.warnings {
                writeln!(io.stderr, "warning: {w}").map_err(out_err)?;
            }
            writeln!(io.stderr, "set {scope}/{name} version {}", out.version).map_err(out_err)?;
            Ok(0)
        }
        Command::Get { name, version } => {
            if let Some(b) = opened.file() {
                // Without shared scopes, a missing own store is the clearer message.
                if opts.shared.is_empty() && !name.contains('/') {
                    missing_store(b)?;
                }
            }
            let value = match version {
                Some(v) => vault.get_version(&scope, name, *v).await?,
                None => vault.get(&scope, name).await?,
            };
            io.stdout.write_all(value.expose()).map_err(out_err)?;
            io.stdout.write_all(b"\n").map_err(out_err)?;
            Ok(0)
        }
        Command::List => {
            if let Some(b) = opened.file() {
                missing_store(b)?;
            }
            for m in vault.list(&scope).await? {
                let kept: Vec<String> = m.versions.iter().map(u64::to_string).collect();
                writeln!(
                    io.stdout,
                    "{}\tversion {}\tkept {}\tupdated {}",
                    m.name,
                    m.version,
                    kept.join(","),
                    m.updated_unix
                )
                .map_err(out_err)?;
            }
            Ok(0)
        }
        Command::Rm { name } => {
            if let Some(b) = opened.file() {
                missing_store(b)?;
            }
            if vault.delete(&scope, name).await? {
                writeln!(io.stderr, "removed {scope}/{name}").map_err(out_err)?;
                Ok(0)
            } else {
                Err(Fail::from(Error::NotFound {
                    scope: scope.clone(),
                    name: name.clone(),
                }))
            }
        }
        Command::RotateKey { new_key_file } => {
            let b = file_backend("rotate-key")?;
            missing_store(&b)?;
            let new_master = match (
                new_key_file,
                env(ENV_NEW_PASSPHRASE).filter(|p| !p.is_empty()),
            ) {
                (Some(f), _) if f.exists() => Some(MasterKey::from_key_file(f)?),
                (Some(f), _) => Some(MasterKey::generate_key_file(f)?),
                (None, Some(p)) => Some(MasterKey::passphrase(SecretValue::from_string(p))),
                (None, None) => None,
            };
            let what = if new_master.is_some() {
                "master key"
            } else {
                "data key"
            };
            let b2 = b.clone();
            let scope2 = scope.clone();
            tokio::task::spawn_blocking(move || match new_master {
                Some(m) => b2.rotate_master_key_sync(&scope2, &m),
                None => b2.rotate_data_key_sync(&scope2),
            })
            .await
            .map_err(|e| Fail(2, format!("rotation task failed: {e}")))??;
            // The audit key survives rotation; open the log with the backend that now unlocks it.
            let log_backend = match (
                new_key_file,
                env(ENV_NEW_PASSPHRASE).filter(|p| !p.is_empty()),
            ) {
                (Some(f), _) => FileBackend::new(b.root(), MasterKey::from_key_file(f)?)?,
                (None, Some(p)) => {
                    FileBackend::new(b.root(), MasterKey::passphrase(SecretValue::from_string(p)))?
                }
                (None, None) => b.clone(),
            };
            AuditLog::for_scope(&log_backend, &scope)?.append(&AuditEvent {
                actor: actor(opts, env),
                action: AuditAction::Rotate,
                name: what.replace(' ', "-"),
                version: None,
                result: "ok".into(),
            })?;
            writeln!(io.stderr, "rotated the {what} of scope \"{scope}\"").map_err(out_err)?;
            Ok(0)
        }
        Command::AuditVerify => {
            let b = file_backend("audit verify")?;
            missing_store(&b)?;
            let report = b.verify_audit(&scope)?;
            writeln!(
                io.stdout,
                "audit log of scope \"{scope}\" verified: {} lines, chain intact, store not rolled back",
                report.lines
            )
            .map_err(out_err)?;
            Ok(0)
        }
        Command::Check { file } => {
            let src = std::fs::read_to_string(file)
                .map_err(|e| Fail(2, format!("cannot read {}: {e}", file.display())))?;
            let name = file.display().to_string();
            let parsed = landscape_spec::parse_str(&name, &src);
            let Some(landscape) = parsed.landscape else {
                for d in parsed.diagnostics.iter().filter(|d| d.is_error()) {
                    writeln!(
                        io.stdout,
                        "{name}:{}:{}: error[{}]: {}",
                        d.span.start.line, d.span.start.col, d.code, d.message
                    )
                    .map_err(out_err)?;
                }
                return Err(Fail(
                    1,
                    format!(
                        "{name} could not be read as a ci.yml; run `landscape validate {name}`"
                    ),
                ));
            };
            // Only vault references are checked; workspace/team values come from the host at run time.
            let mut ctx = Context::new(scope.clone());
            ctx.workspace_id = Some(String::new());
            ctx.dev_domain = Some(String::new());
            ctx.team_id = Some(String::new());
            let mut problems = match resolve::resolve(&vault, &name, &landscape, &ctx).await {
                Ok(r) => {
                    let refs = r.uses.len();
                    writeln!(
                        io.stderr,
                        "{name}: all {refs} vault reference(s) resolve in scope \"{scope}\""
                    )
                    .map_err(out_err)?;
                    return Ok(0);
                }
                Err(ResolveError::Vault(e)) => return Err(e.into()),
                Err(ResolveError::Problems(p)) => p,
            };
            problems.retain(|p| p.kind != ProblemKind::Unset);
            if problems.is_empty() {
                writeln!(
                    io.stderr,
                    "{name}: all vault references resolve in scope \"{scope}\""
                )
                .map_err(out_err)?;
                return Ok(0);
            }
            resolve::refine_positions(&mut problems, &src);
            for p in &problems {
                writeln!(io.stdout, "{p}").map_err(out_err)?;
            }
            writeln!(
                io.stderr,
                "{name}: {} unresolved vault reference(s)",
                problems.len()
            )
            .map_err(out_err)?;
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openbao_backend_is_there_or_names_its_feature() {
        let opts = Options {
            backend: BackendKind::OpenBao,
            ..Options::default()
        };
        let env = |k: &str| (k == ENV_TOKEN).then(|| "tok".to_string());
        let opened = open(&opts, &env);
        #[cfg(feature = "openbao")]
        assert!(matches!(opened, Ok(Opened::Bao(_))));
        #[cfg(not(feature = "openbao"))]
        match opened {
            Ok(_) => panic!("opened another backend"),
            Err(Fail(code, message)) => {
                assert_eq!(code, 2);
                assert!(message.contains("`openbao` feature"), "{message}");
            }
        }
    }
}
