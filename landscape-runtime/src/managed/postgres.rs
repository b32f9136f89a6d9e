//! The built-in `postgres/v1` provider: Debian's PostgreSQL server binaries
//! (`/usr/lib/postgresql/<major>/bin`) run as a landscape instance on the host base.
//!
//! ```yaml
//! postgres:
//!   provider: {name: postgres, schemaVersion: v1}
//!   plan: {id: 0, parameters: {storage: 2048, cpu: 1, memory: 512}}   # MiB, cores, MiB
//!   config: {version: "15", userName: app, databaseName: app}
//!   secrets:
//!     userPassword: ${{ vault.POSTGRES_PASSWORD }}
//!     superuserPassword: ${{ vault.POSTGRES_SUPERUSER_PASSWORD }}
//!   backups: {schedule: "@daily", keep: 7}
//! ```
//!
//! * **Provision** (once; the id lives in `DATA/resource.json`): `initdb` as the host's
//!   `postgres` system user (postgres refuses uid 0; the runtime maps that uid to the
//!   user running the host, or to its subordinate range as root), superuser `postgres`
//!   with `secrets.superuserPassword` through a 0600 `--pwfile` that is removed right
//!   after — never on a command line. Then, in single-user mode (no socket open yet),
//!   `config.userName` is created with `secrets.userPassword` as a SCRAM-SHA-256 verifier
//!   computed here (the server never sees the plain password; a non-ASCII one, which needs
//!   SASLprep, is handed over in a 0600 file instead), and `config.databaseName` owned by
//!   it.
//! * **Version.** The newest installed major runs, or the one `config.version` names when
//!   it is installed; a declared major that is not installed is a *warning* (the service
//!   runs the installed one — the local stand-in for a marketplace database). A data
//!   directory initialised by a major that is not installed is an *error* (PostgreSQL
//!   cannot open it): install that major, or restore a backup into a fresh directory.
//! * **Runs** as an ordinary supervised service: `postgres -D /var/lib/landscape/pgdata`,
//!   listening on `0.0.0.0:5432` inside the instance's own network namespace (so only on
//!   the landscape network — the host's own cluster on 5432 is not touched), its unix
//!   socket in `DATA/state/run`. `pg_hba.conf`: the OS user `postgres` by `peer` on the
//!   socket (the provider's own jobs), everyone else with SCRAM passwords. Logs go to
//!   stderr, i.e. the supervisor's redacted log files. After a crash (`kill -9`) the
//!   supervisor restarts it and it recovers from its WAL (`recovery_init_sync_method =
//!   syncfs`: one syncfs instead of an fsync per file first). Ready when a startup message is
//!   answered by an authentication request (`R`), not while it answers `E` ("the
//!   database system is starting up").
//! * **Plan parameters**: `cpu` and `memory` become cgroup limits (where the runtime has
//!   cgroups; otherwise a warning is logged and it runs without), `memory` also sizes
//!   `shared_buffers` (a quarter); `storage` is reported as not enforced.
//! * **Backups**: `pg_dump -Fc` of `config.databaseName` into `DATA/state/backups`
//!   ([`Provider::backup`]; [`run_backups`](super::run_backups) on the declared schedule),
//!   restored with `pg_restore --clean --if-exists --single-transaction` into the running
//!   server. Both are one-shot instances that talk to the server through its unix socket.

use super::{
    blocking, check_backups, check_parameters, limits_from_parameters, owned_dir, owned_file,
    remove_data_dir, run_job, state_mount, system_user, Connection, Field, Job, Kind,
    ManagedContext, Provider, RemoveOnDrop, ResourceFile, ResourceId, Result, Schema, STATE_MOUNT,
};
use crate::supervisor::{Probe, ServiceDef};
use crate::{InstanceSpec, Process};
use landscape_spec::{Diagnostic, Service};
use std::path::{Path, PathBuf};

/// The port the server listens on inside its instance.
pub const PORT: u16 = 5432;

const NAME: &str = "postgres";
const VERSION: &str = "v1";
/// The database superuser (and the OS user the server runs as).
const SUPERUSER: &str = "postgres";

static SCHEMA: Schema = Schema {
    provider: "postgres/v1",
    config: &[
        Field {
            name: "version",
            kind: Kind::StringOrNumber,
            required: false,
            help: "the PostgreSQL version, e.g. \"15\" or \"16.4\" (the major is what counts)",
        },
        Field {
            name: "userName",
            kind: Kind::String,
            required: true,
            help: "the database user the services log in as, e.g. `userName: app`",
        },
        Field {
            name: "databaseName",
            kind: Kind::String,
            required: true,
            help: "the database created for the services, owned by userName, e.g. `databaseName: app`",
        },
    ],
    secrets: &[
        Field {
            name: "userPassword",
            kind: Kind::String,
            required: true,
            help: "the password of userName, e.g. `userPassword: ${{ vault.POSTGRES_PASSWORD }}`",
        },
        Field {
            name: "superuserPassword",
            kind: Kind::String,
            required: true,
            help: "the password of the superuser `postgres`, e.g. `superuserPassword: ${{ vault.POSTGRES_SUPERUSER_PASSWORD }}`",
        },
    ],
    parameters: &[
        Field {
            name: "storage",
            kind: Kind::Number,
            required: false,
            help: "disk space in MiB (not enforced locally)",
        },
        Field {
            name: "cpu",
            kind: Kind::Number,
            required: false,
            help: "CPU cores, e.g. 1 or 0.5",
        },
        Field {
            name: "memory",
            kind: Kind::Number,
            required: false,
            help: "memory in MiB, e.g. 512",
        },
    ],
};

/// The `postgres/v1` provider (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Postgres {
    root: PathBuf,
}

impl Default for Postgres {
    fn default() -> Self {
        Postgres::new()
    }
}

impl Postgres {
    /// The provider over Debian's installation (`/usr/lib/postgresql`).
    pub fn new() -> Postgres {
        Postgres::with_root("/usr/lib/postgresql")
    }

    /// The provider over another directory laid out like `/usr/lib/postgresql`
    /// (`<root>/<major>/bin/postgres`; it must be visible inside instances on the host
    /// base, i.e. under `/usr`).
    pub fn with_root(root: impl Into<PathBuf>) -> Postgres {
        Postgres { root: root.into() }
    }

    /// The installed server majors, ascending.
    pub fn installed(&self) -> Vec<u32> {
        let mut majors: Vec<u32> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|m| self.bin(*m, "postgres").is_file())
            .collect();
        majors.sort_unstable();
        majors
    }

    fn bin(&self, major: u32, tool: &str) -> PathBuf {
        self.root.join(major.to_string()).join("bin").join(tool)
    }

    /// The readiness probe: a startup message (protocol 3.0, user `postgres`); ready when
    /// the server asks for authentication (`R`), not while it refuses with `E` (starting
    /// up, shutting down, in recovery).
    pub fn probe() -> Probe {
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
        for (k, v) in [
            ("user", SUPERUSER),
            ("database", "postgres"),
            ("application_name", "landscape-probe"),
        ] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut send = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        send.extend_from_slice(&body);
        Probe::Exchange {
            port: PORT,
            send,
            expect: vec![b"R".to_vec()],
        }
    }

    /// The major a data directory was initialised with (`PG_VERSION`), checked against the
    /// installed ones.
    fn data_major(&self, ctx: &ManagedContext) -> Result<u32> {
        let file = ctx.state_dir().join("pgdata").join("PG_VERSION");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            ctx.config_error(format!(
                "{} cannot be read ({e}): the data directory is incomplete; restore it or deprovision and provision again",
                file.display()
            ))
        })?;
        let major: u32 = text
            .trim()
            .parse()
            .map_err(|_| ctx.config_error(format!("{} does not hold a version", file.display())))?;
        let installed = self.installed();
        if !installed.contains(&major) {
            return Err(ctx.config_error(format!(
                "the data directory was initialised by PostgreSQL {major}, which is not installed here (installed: {}); install postgresql-{major}, or restore a backup into a fresh data directory",
                list(&installed)
            )));
        }
        Ok(major)
    }

    /// The major to initialise with: the declared one when installed, else the newest.
    fn choose_major(&self, ctx: &ManagedContext) -> Result<u32> {
        let installed = self.installed();
        let Some(newest) = installed.last().copied() else {
            return Err(ctx.config_error(format!(
                "no PostgreSQL server is installed ({}/<major>/bin/postgres); install Debian's postgresql package",
                self.root.display()
            )));
        };
        match ctx.config_str("version").as_deref().and_then(major_of) {
            Some(m) if installed.contains(&m) => Ok(m),
            Some(m) => {
                tracing::warn!(service = %ctx.service, "config.version names PostgreSQL {m}, which is not installed; running {newest}");
                Ok(newest)
            }
            None => Ok(newest),
        }
    }

    fn names(ctx: &ManagedContext) -> Result<(String, String)> {
        let get = |key: &str| -> Result<String> {
            let v = ctx.config_str(key).ok_or_else(|| {
                ctx.config_error(format!("config.{key} is missing; {}", help_of(key)))
            })?;
            check_identifier(key, &v).map_err(|m| ctx.config_error(m))?;
            Ok(v)
        };
        Ok((get("userName")?, get("databaseName")?))
    }

    fn provision_sync(&self, ctx: &ManagedContext) -> Result<ResourceId> {
        if let Some(rec) = ResourceFile::read(ctx, NAME)? {
            ctx.ensure_data_dir()?;
            self.data_major(ctx)?;
            return Ok(rec.id);
        }
        // Everything is checked before anything is created.
        let user = system_user(ctx, SUPERUSER, "postgresql")?;
        let (db_user, db_name) = Self::names(ctx)?;
        let superuser_pw = ctx.secret("superuserPassword")?;
        let user_pw = ctx.secret("userPassword")?;
        if superuser_pw.expose().contains(['\n', '\r']) {
            return Err(ctx.config_error(
                "secrets.superuserPassword contains a line break, which initdb cannot take; choose another password",
            ));
        }
        let major = self.choose_major(ctx)?;
        ctx.ensure_data_dir()?;
        let state = ctx.state_dir();
        owned_dir(ctx, &state, user)?;
        let pgdata = state.join("pgdata");
        if pgdata.exists() {
            // A provision that was interrupted before its record was written: nobody has
            // been handed this data, start again.
            tracing::warn!(service = %ctx.service, "removing the incomplete data directory {} of an interrupted provision", pgdata.display());
            std::fs::remove_dir_all(&pgdata)
                .map_err(|e| ctx.io_error(format!("remove {}", pgdata.display()), e))?;
        }
        for d in ["run", "backups"] {
            owned_dir(ctx, &state.join(d), user)?;
        }
        let pwfile = state.join(".pwfile");
        let sql = state.join(".provision.sql");
        let _cleanup = RemoveOnDrop(vec![pwfile.clone(), sql.clone()]);
        owned_file(
            ctx,
            &pwfile,
            format!("{}\n", superuser_pw.expose()).as_bytes(),
            user,
        )?;
        let password = if user_pw.expose().is_ascii() {
            let salt = super::random_bytes(16);
            scram_verifier(user_pw.expose(), &salt, 4096)
        } else {
            // SASLprep (NFKC) applies: let the server hash it.
            user_pw.expose().to_string()
        };
        let statements = format!(
            "CREATE ROLE {u} LOGIN PASSWORD {p};\n\nCREATE DATABASE {d} OWNER {u};\n\n",
            u = quote_ident(&db_user),
            d = quote_ident(&db_name),
            p = quote_literal(&password),
        );
        owned_file(ctx, &sql, statements.as_bytes(), user)?;
        let bin = self.bin(major, "");
        let script = format!(
            r#"set -e
B={bin}
D={m}/pgdata
"$B/initdb" -D "$D" -U {su} --pwfile={m}/.pwfile --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --no-locale
rm -f {m}/.pwfile
cat > "$D/pg_hba.conf" <<'EOF'
# Written by landscape's postgres provider. The provider's own jobs connect as the OS
# user postgres through the unix socket in the data directory; everyone else by password.
local   all   postgres                 peer
local   all   all                      scram-sha-256
host    all   all      0.0.0.0/0       scram-sha-256
host    all   all      ::/0            scram-sha-256
EOF
"$B/postgres" --single -j -D "$D" -c log_min_error_statement=panic -c exit_on_error=on postgres < {m}/.provision.sql
rm -f {m}/.provision.sql
"#,
            bin = bin.display().to_string().trim_end_matches('/'),
            m = STATE_MOUNT,
            su = SUPERUSER,
        );
        run_job(
            ctx,
            Job {
                name: "initdb",
                script,
                user,
                mounts: vec![state_mount(ctx)],
            },
        )?;
        let rec = ResourceFile::new(
            NAME,
            VERSION,
            serde_json::json!({"major": major, "userName": db_user, "databaseName": db_name}),
        );
        rec.write(ctx)?;
        tracing::info!(service = %ctx.service, resource = %rec.id, "provisioned PostgreSQL {major}");
        Ok(rec.id)
    }

    fn resource(ctx: &ManagedContext) -> Result<ResourceFile> {
        ResourceFile::read(ctx, NAME)?.ok_or_else(|| {
            ctx.config_error(format!(
                "no PostgreSQL resource in {}; provision it first",
                ctx.data_dir.display()
            ))
        })
    }

    fn service_def_sync(&self, ctx: &ManagedContext, resource: &ResourceId) -> Result<ServiceDef> {
        let rec = Self::resource(ctx)?;
        if rec.id != *resource {
            return Err(ctx.config_error(format!(
                "the data directory {} holds resource {}, not {resource}; pass the id provision returned",
                ctx.data_dir.display(),
                rec.id
            )));
        }
        // The role and database were created under the names of the first provision.
        for key in ["userName", "databaseName"] {
            let then = rec.detail.get(key).and_then(|v| v.as_str());
            if let (Some(then), Some(now)) = (then, ctx.config_str(key)) {
                if then != now {
                    return Err(ctx.config_error(format!(
                        "config.{key} is {now:?}, but the database was provisioned with {then:?}; change it back, or deprovision (down --volumes) to start afresh"
                    )));
                }
            }
        }
        let major = self.data_major(ctx)?;
        let user = system_user(ctx, SUPERUSER, "postgresql")?;
        owned_dir(ctx, &ctx.state_dir().join("run"), user)?;
        let limits = limits_from_parameters(&ctx.parameters);
        let mut args = vec![
            self.bin(major, "postgres").display().to_string(),
            "-D".into(),
            format!("{STATE_MOUNT}/pgdata"),
            "-c".into(),
            "listen_addresses=0.0.0.0".into(),
            "-c".into(),
            format!("port={PORT}"),
            "-c".into(),
            format!("unix_socket_directories={STATE_MOUNT}/run"),
        ];
        if major >= 14 {
            // After a crash, one syncfs of the data directory's filesystem instead of an
            // fsync of every file before recovery (seconds on a busy disk).
            args.extend(["-c".into(), "recovery_init_sync_method=syncfs".into()]);
        }
        if let Some(mem) = limits.and_then(|l| l.memory_bytes) {
            let mib = (mem >> 20) / 4;
            args.extend(["-c".into(), format!("shared_buffers={}MB", mib.max(16))]);
        }
        if limits.is_some() {
            if let Err(why) = ctx.runtime.limits_support() {
                tracing::warn!(service = %ctx.service, "plan.parameters cpu/memory are not enforced here: {why}");
            }
        }
        let mut spec = InstanceSpec::new(ctx.service.clone(), Process::argv(args));
        spec.process.cwd = Some(STATE_MOUNT.into());
        spec.user = user;
        spec.mounts = vec![state_mount(ctx)];
        spec.limits = limits;
        Ok(ServiceDef {
            name: ctx.service.clone(),
            replicas: 1,
            spec,
            ports: vec![PORT],
            probe: Some(Self::probe()),
        })
    }

    fn backup_sync(&self, ctx: &ManagedContext) -> Result<PathBuf> {
        let rec = Self::resource(ctx)?;
        let major = self.data_major(ctx)?;
        let user = system_user(ctx, SUPERUSER, "postgresql")?;
        let db = database_of(ctx, &rec)?;
        let dir = ctx.backup_dir();
        owned_dir(ctx, &dir, user)?;
        let name = super::backup_name(&db, "dump");
        let partial = dir.join(format!("{name}.partial"));
        let guard = RemoveOnDrop(vec![partial.clone()]);
        let script = format!(
            "set -e\n{pg_dump} -h {m}/run -p {PORT} -U {SUPERUSER} -Fc -f '{m}/backups/{name}.partial' -d '{db}'\n",
            pg_dump = self.bin(major, "pg_dump").display(),
            m = STATE_MOUNT,
        );
        run_job(
            ctx,
            Job {
                name: "pg_dump",
                script,
                user,
                mounts: vec![state_mount(ctx)],
            },
        )?;
        let done = dir.join(&name);
        std::fs::rename(&partial, &done)
            .map_err(|e| ctx.io_error(format!("rename {} into place", partial.display()), e))?;
        drop(guard);
        Ok(done)
    }

    fn restore_sync(&self, ctx: &ManagedContext, backup: &Path) -> Result<()> {
        let rec = Self::resource(ctx)?;
        let major = self.data_major(ctx)?;
        let user = system_user(ctx, SUPERUSER, "postgresql")?;
        let db = database_of(ctx, &rec)?;
        if !backup.is_file() {
            return Err(ctx.config_error(format!(
                "backup {} is not a file; give a path that Provider::backup returned",
                backup.display()
            )));
        }
        // A private copy the server's user can read, whoever owns the original.
        let copy = ctx.state_dir().join(".restore.dump");
        let _cleanup = RemoveOnDrop(vec![copy.clone()]);
        let _ = std::fs::remove_file(&copy);
        std::fs::copy(backup, &copy)
            .map_err(|e| ctx.io_error(format!("copy {} for the restore", backup.display()), e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| ctx.io_error(format!("chmod {}", copy.display()), e))?;
        }
        ctx.runtime.adopt_dir(&copy, user)?;
        let script = format!(
            "set -e\n{pg_restore} -h {m}/run -p {PORT} -U {SUPERUSER} --clean --if-exists --single-transaction --exit-on-error -d '{db}' {m}/.restore.dump\n",
            pg_restore = self.bin(major, "pg_restore").display(),
            m = STATE_MOUNT,
        );
        run_job(
            ctx,
            Job {
                name: "pg_restore",
                script,
                user,
                mounts: vec![state_mount(ctx)],
            },
        )
    }
}

fn database_of(ctx: &ManagedContext, rec: &ResourceFile) -> Result<String> {
    let db = rec
        .detail
        .get("databaseName")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| ctx.config_str("databaseName"))
        .ok_or_else(|| ctx.config_error("config.databaseName is missing"))?;
    check_identifier("databaseName", &db).map_err(|m| ctx.config_error(m))?;
    Ok(db)
}

#[async_trait::async_trait]
impl Provider for Postgres {
    fn name(&self) -> &str {
        NAME
    }

    fn schema_version(&self) -> &str {
        VERSION
    }

    fn validate(&self, service: &Service) -> Vec<Diagnostic> {
        let mut out = SCHEMA.check(service);
        let svc = &service.name.value;
        if let Some(config) = &service.config {
            for key in ["userName", "databaseName"] {
                if let Some(v) = config.get(key) {
                    if let Some(s) = v.value.as_str() {
                        if let Err(m) = check_identifier(key, s) {
                            out.push(Diagnostic::error(
                                super::codes::BAD_VALUE,
                                v.span,
                                format!("service {svc:?}: {m}"),
                            ));
                        }
                    }
                }
            }
            if let Some(v) = config.get("version") {
                let text = match &v.value {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None, // the schema reported the type
                };
                if let Some(text) = text {
                    match major_of(&text) {
                        None => out.push(
                            Diagnostic::error(
                                super::codes::BAD_VALUE,
                                v.span,
                                format!("service {svc:?}: config.version {text:?} is not a PostgreSQL version"),
                            )
                            .with_help("write the version like \"15\" or \"16.4\""),
                        ),
                        Some(m) => {
                            let installed = self.installed();
                            if let Some(newest) = installed.last() {
                                if !installed.contains(&m) {
                                    out.push(
                                        Diagnostic::warning(
                                            super::codes::VERSION_MISMATCH,
                                            v.span,
                                            format!(
                                                "service {svc:?}: PostgreSQL {m} is declared but this machine has {}; the service runs PostgreSQL {newest}",
                                                list(&installed)
                                            ),
                                        )
                                        .with_help(format!("install postgresql-{m} to run the declared version")),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        check_parameters(NAME, service, &mut out);
        check_backups(service, &mut out);
        out
    }

    async fn provision(&self, ctx: &ManagedContext) -> Result<ResourceId> {
        let (me, ctx) = (self.clone(), ctx.clone());
        blocking(move || me.provision_sync(&ctx)).await
    }

    async fn service_def(
        &self,
        ctx: &ManagedContext,
        resource: &ResourceId,
    ) -> Result<Option<ServiceDef>> {
        let (me, ctx, resource) = (self.clone(), ctx.clone(), resource.clone());
        blocking(move || me.service_def_sync(&ctx, &resource).map(Some)).await
    }

    async fn connection(&self, ctx: &ManagedContext) -> Result<Connection> {
        let (user, database) = Self::names(ctx)?;
        Ok(Connection {
            scheme: "postgres".into(),
            host: ctx.service.clone(),
            port: PORT,
            user,
            database: Some(database),
            password: ctx.secret("userPassword")?.clone(),
        })
    }

    async fn backup(&self, ctx: &ManagedContext) -> Result<PathBuf> {
        let (me, ctx) = (self.clone(), ctx.clone());
        blocking(move || me.backup_sync(&ctx)).await
    }

    async fn restore(&self, ctx: &ManagedContext, backup: &Path) -> Result<()> {
        let (me, ctx, backup) = (self.clone(), ctx.clone(), backup.to_path_buf());
        blocking(move || me.restore_sync(&ctx, &backup)).await
    }

    async fn deprovision(&self, ctx: &ManagedContext) -> Result<()> {
        let ctx = ctx.clone();
        blocking(move || remove_data_dir(&ctx, NAME)).await
    }
}

fn list(v: &[u32]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

fn help_of(key: &str) -> &'static str {
    SCHEMA
        .config
        .iter()
        .find(|f| f.name == key)
        .map_or("", |f| f.help)
}

/// The major of a version as written (`"17.9"` → 17, `"15"` → 15).
fn major_of(v: &str) -> Option<u32> {
    let major = v.trim().split('.').next()?;
    major.parse().ok().filter(|m| *m > 0)
}

/// User and database names: a letter or `_` first, then letters, digits or `_`, at most
/// 63 bytes; not a name the server reserves.
fn check_identifier(key: &str, s: &str) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "config.{key} {s:?} is not a valid name: use a letter or '_' first, then letters, digits or '_', at most 63 characters"
        ));
    }
    let reserved: &[&str] = match key {
        "userName" => &[SUPERUSER],
        _ => &["postgres", "template0", "template1"],
    };
    if reserved.contains(&s) || s.starts_with("pg_") {
        return Err(format!(
            "config.{key} {s:?} is reserved by PostgreSQL; choose another name"
        ));
    }
    Ok(())
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

// ---------------------------------------------------------------------------------------
// SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677), as PostgreSQL stores them.

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// PBKDF2-HMAC-SHA256 with one output block (32 bytes).
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac_sha256(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &[&u]);
        for (o, b) in out.iter_mut().zip(u) {
            *o ^= b;
        }
    }
    out
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` for an ASCII password
/// (SASLprep leaves those unchanged).
pub(crate) fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let b64 = base64::engine::general_purpose::STANDARD;
    let salted = pbkdf2_sha256(password.as_bytes(), salt, iterations);
    let client_key = hmac_sha256(&salted, &[b"Client Key"]);
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac_sha256(&salted, &[b"Server Key"]);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn pbkdf2_matches_the_published_vectors() {
        assert_eq!(
            hex(&pbkdf2_sha256(b"password", b"salt", 1)),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
        assert_eq!(
            hex(&pbkdf2_sha256(b"password", b"salt", 4096)),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn scram_matches_rfc7677() {
        // RFC 7677 §3: user "user", password "pencil"; the server signature over the
        // example's auth message proves ServerKey.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = scram_verifier("pencil", &salt, 4096);
        let server_key = b64.decode(v.rsplit(':').next().unwrap()).unwrap();
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac_sha256(&server_key, &[auth.as_bytes()]);
        assert_eq!(
            b64.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(v.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
    }

    #[test]
    fn the_probe_is_a_startup_message() {
        let Probe::Exchange { port, send, expect } = Postgres::probe() else {
            panic!("not an exchange probe");
        };
        assert_eq!(port, 5432);
        assert_eq!(expect, [b"R".to_vec()]);
        let len = u32::from_be_bytes(send[..4].try_into().unwrap()) as usize;
        assert_eq!(len, send.len());
        assert_eq!(&send[4..8], &196_608u32.to_be_bytes());
        assert!(send.ends_with(b"landscape-probe\0\0"));
    }

    #[test]
    fn names_and_versions() {
        assert_eq!(major_of("17.9"), Some(17));
        assert_eq!(major_of("15"), Some(15));
        assert_eq!(major_of("latest"), None);
        assert!(check_identifier("userName", "demo_app").is_ok());
        assert!(check_identifier("userName", "postgres").is_err());
        assert!(check_identifier("databaseName", "template1").is_err());
        assert!(check_identifier("databaseName", "a;drop").is_err());
        assert!(check_identifier("databaseName", "1abc").is_err());
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
