//! The built-in `redis/v1` provider: Debian's `redis-server` run as a landscape instance
//! on the host base.
//!
//! ```yaml
//! cache:
//!   provider: {name: redis, schemaVersion: v1}
//!   plan: {id: 0, parameters: {memory: 256}}      # MiB
//!   config: {persistence: aof}                    # aof (default) or rdb
//!   secrets:
//!     password: ${{ vault.REDIS_PASSWORD }}
//! ```
//!
//! * **Provision** creates `DATA/state/data` (the server's `dir`) for the host's `redis`
//!   system user and records the resource id.
//! * **Runs** `redis-server /var/lib/landscape/redis.conf` as an ordinary supervised
//!   service, on `0.0.0.0:6379` inside its own network namespace (only the landscape
//!   network reaches it). The configuration file is written (0600, the server's user) on
//!   every [`Provider::service_def`], so a changed password applies at the next start;
//!   `secrets.password` is its `requirepass` — never on a command line.
//! * **Persistence** in `DATA/state/data`: `aof` (append-only file, fsync every second,
//!   the default: a crash loses at most the last second) or `rdb` (snapshots at Redis's
//!   default save points, and on shutdown).
//! * **Plan parameters**: `cpu` and `memory` become cgroup limits (where the runtime has
//!   cgroups), and `memory` also sets `maxmemory` to 90% of it so that Redis refuses writes
//!   (`noeviction`) before the kernel kills it; `storage` is reported as not enforced.
//! * Ready when `PING` is answered with `+PONG` or `-NOAUTH` (not `-LOADING`).
//! * No backups (`backups` is refused by validation): copy `DATA/state/data` while the
//!   service is stopped.
//!
//! `config.version` is accepted and not checked (the installed `redis-server` runs).

use super::{
    blocking, check_parameters, limits_from_parameters, owned_dir, owned_file, remove_data_dir,
    system_user, Connection, Field, Kind, ManagedContext, Provider, ResourceFile, ResourceId,
    Result, Schema, STATE_MOUNT,
};
use crate::supervisor::{Probe, ServiceDef};
use crate::{InstanceSpec, Process};
use landscape_spec::{Diagnostic, Service};
use std::path::PathBuf;

/// The port the server listens on inside its instance.
pub const PORT: u16 = 6379;

const NAME: &str = "redis";
const VERSION: &str = "v1";

static SCHEMA: Schema = Schema {
    provider: "redis/v1",
    config: &[
        Field {
            name: "version",
            kind: Kind::StringOrNumber,
            required: false,
            help: "the Redis version (informational: the installed redis-server runs)",
        },
        Field {
            name: "persistence",
            kind: Kind::String,
            required: false,
            help: "`aof` (append-only file, the default) or `rdb` (snapshots)",
        },
    ],
    secrets: &[Field {
        name: "password",
        kind: Kind::String,
        required: true,
        help: "the password clients AUTH with, e.g. `password: ${{ vault.REDIS_PASSWORD }}`",
    }],
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
            help: "memory in MiB, e.g. 256",
        },
    ],
};

/// The `redis/v1` provider (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Redis {
    server: PathBuf,
}

impl Default for Redis {
    fn default() -> Self {
        Redis::new()
    }
}

impl Redis {
    /// The provider over Debian's `/usr/bin/redis-server`.
    pub fn new() -> Redis {
        Redis::with_server("/usr/bin/redis-server")
    }

    /// The provider over another `redis-server` binary (it must be visible inside
    /// instances on the host base, i.e. under `/usr`).
    pub fn with_server(server: impl Into<PathBuf>) -> Redis {
        Redis {
            server: server.into(),
        }
    }

    /// The readiness probe: `PING`, ready on `+PONG` or `-NOAUTH` (a password is set),
    /// not on `-LOADING` (still reading its data).
    pub fn probe() -> Probe {
        Probe::Exchange {
            port: PORT,
            send: b"PING\r\n".to_vec(),
            expect: vec![b"+PONG".to_vec(), b"-NOAUTH".to_vec()],
        }
    }

    fn persistence(ctx: &ManagedContext) -> Result<Persistence> {
        match ctx.config_str("persistence").as_deref() {
            None | Some("aof") => Ok(Persistence::Aof),
            Some("rdb") => Ok(Persistence::Rdb),
            Some(other) => Err(ctx.config_error(format!(
                "config.persistence {other:?} is not known; use aof or rdb"
            ))),
        }
    }

    fn provision_sync(&self, ctx: &ManagedContext) -> Result<ResourceId> {
        if let Some(rec) = ResourceFile::read(ctx, NAME)? {
            ctx.ensure_data_dir()?;
            return Ok(rec.id);
        }
        if !self.server.is_file() {
            return Err(ctx.config_error(format!(
                "{} is not installed; install Debian's redis-server package",
                self.server.display()
            )));
        }
        let user = system_user(ctx, "redis", "redis-server")?;
        ctx.secret("password")?;
        Self::persistence(ctx)?;
        ctx.ensure_data_dir()?;
        let state = ctx.state_dir();
        owned_dir(ctx, &state, user)?;
        owned_dir(ctx, &state.join("data"), user)?;
        let rec = ResourceFile::new(NAME, VERSION, serde_json::json!({}));
        rec.write(ctx)?;
        tracing::info!(service = %ctx.service, resource = %rec.id, "provisioned Redis");
        Ok(rec.id)
    }

    fn service_def_sync(&self, ctx: &ManagedContext, resource: &ResourceId) -> Result<ServiceDef> {
        let rec = ResourceFile::read(ctx, NAME)?.ok_or_else(|| {
            ctx.config_error(format!(
                "no Redis resource in {}; provision it first",
                ctx.data_dir.display()
            ))
        })?;
        if rec.id != *resource {
            return Err(ctx.config_error(format!(
                "the data directory {} holds resource {}, not {resource}; pass the id provision returned",
                ctx.data_dir.display(),
                rec.id
            )));
        }
        let user = system_user(ctx, "redis", "redis-server")?;
        let password = ctx.secret("password")?;
        let state = ctx.state_dir();
        owned_dir(ctx, &state.join("data"), user)?;
        let limits = limits_from_parameters(&ctx.parameters);
        let mut conf = format!(
            "# Written by landscape's redis provider on every start; holds the password (0600).\n\
             bind 0.0.0.0\nport {PORT}\nprotected-mode no\ndaemonize no\nsupervised no\n\
             logfile \"\"\nalways-show-logo no\ndir {STATE_MOUNT}/data\n"
        );
        match Self::persistence(ctx)? {
            Persistence::Aof => conf.push_str("appendonly yes\nappendfsync everysec\nsave \"\"\n"),
            Persistence::Rdb => conf.push_str("appendonly no\nsave 3600 1 300 100 60 10000\n"),
        }
        if let Some(mem) = limits.and_then(|l| l.memory_bytes) {
            conf.push_str(&format!(
                "maxmemory {}\nmaxmemory-policy noeviction\n",
                mem / 10 * 9
            ));
        }
        conf.push_str(&format!("requirepass \"{}\"\n", escape(password.expose())));
        owned_file(ctx, &state.join("redis.conf"), conf.as_bytes(), user)?;
        if limits.is_some() {
            if let Err(why) = ctx.runtime.limits_support() {
                tracing::warn!(service = %ctx.service, "plan.parameters cpu/memory are not enforced here: {why}");
            }
        }
        let mut spec = InstanceSpec::new(
            ctx.service.clone(),
            Process::argv([
                self.server.display().to_string(),
                format!("{STATE_MOUNT}/redis.conf"),
            ]),
        );
        spec.process.cwd = Some(format!("{STATE_MOUNT}/data"));
        spec.user = user;
        spec.mounts = vec![super::state_mount(ctx)];
        spec.limits = limits;
        Ok(ServiceDef {
            name: ctx.service.clone(),
            replicas: 1,
            spec,
            ports: vec![PORT],
            probe: Some(Self::probe()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persistence {
    Aof,
    Rdb,
}

/// A string for a double-quoted `redis.conf` argument: everything but letters and digits
/// as `\xHH`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[async_trait::async_trait]
impl Provider for Redis {
    fn name(&self) -> &str {
        NAME
    }

    fn schema_version(&self) -> &str {
        VERSION
    }

    fn validate(&self, service: &Service) -> Vec<Diagnostic> {
        let mut out = SCHEMA.check(service);
        let svc = &service.name.value;
        if let Some(v) = service.config.as_ref().and_then(|c| c.get("persistence")) {
            if let Some(s) = v.value.as_str() {
                if s != "aof" && s != "rdb" {
                    out.push(
                        Diagnostic::error(
                            super::codes::BAD_VALUE,
                            v.span,
                            format!("service {svc:?}: config.persistence {s:?} is not known; expected one of aof, rdb"),
                        )
                        .with_help("aof: append-only file (default); rdb: snapshots"),
                    );
                }
            }
        }
        if let Some(b) = &service.backups {
            out.push(
                Diagnostic::error(
                    super::codes::UNKNOWN_KEY,
                    b.span,
                    format!("service {svc:?}: redis/v1 takes no backups"),
                )
                .with_help(
                    "remove `backups`; copy the data directory while the service is stopped",
                ),
            );
        }
        check_parameters(NAME, service, &mut out);
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
        Ok(Connection {
            scheme: "redis".into(),
            host: ctx.service.clone(),
            port: PORT,
            user: "default".into(),
            database: None,
            password: ctx.secret("password")?.clone(),
        })
    }

    async fn deprovision(&self, ctx: &ManagedContext) -> Result<()> {
        let ctx = ctx.clone();
        blocking(move || remove_data_dir(&ctx, NAME)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_escaped_for_redis_conf() {
        assert_eq!(escape("ab1"), "ab1");
        assert_eq!(escape("a \"b\"\n"), "a\\x20\\x22b\\x22\\x0a");
    }

    #[test]
    fn the_probe_pings() {
        let Probe::Exchange { port, send, expect } = Redis::probe() else {
            panic!("not an exchange probe");
        };
        assert_eq!((port, send.as_slice()), (6379, &b"PING\r\n"[..]));
        assert_eq!(expect.len(), 2);
    }
}
