//! Supervision: a landscape's stages, services and replicas kept running.
//!
//! A [`Supervisor`] owns one landscape: its [`Network`], and per service the replicas of a
//! [`ServiceDef`]. Each replica has a runner thread that starts the instance (attached to
//! the network, with its own address and the hostname `SERVICE-N`), waits for it — the exit
//! arrives from the instance's helper the moment init is reaped, no polling — and restarts
//! it with exponential backoff. A probe thread per running replica checks its health from
//! inside the landscape network (through [`Network::connect`], against the replica's own
//! address): a replica is in the load balancer and in the DNS answers for its service only
//! while its probe succeeds; a replica that never becomes ready, or fails its probe
//! [`ProbeConfig::failure_threshold`] times in a row, is restarted.
//!
//! Defaults (modelled on the kubelet, [`ProbeConfig`], [`Backoff`]):
//!
//! | | default |
//! |---|---|
//! | startup probe | after 5 ms, then doubling up to every 1 s, until the first success; given up (and the replica restarted) after 120 s |
//! | liveness probe | every 10 s, 1 s timeout, 3 failures in a row → restart |
//! | readiness | out of rotation on the first failed probe, back on the next success |
//! | restart backoff | 100 ms, doubling, capped at 30 s (the kubelet's 5 min is too slow for development), reset after 10 min of running |
//! | crash loop | shown as `crash-loop` from the 3rd failure in a row, with the last exit, its log lines and the time of the next try; never given up (unlike systemd's 5 tries) |
//!
//! Everything a host shows comes as [`Event`]s ([`Supervisor::subscribe`]) and
//! [`Status`] snapshots ([`Supervisor::status`]), both serde types.

use crate::logs::{LogConfig, LogLine};
use crate::{Error, Limits, Process, Result, Runtime};
use crate::{Exit, Instance, InstanceControl, InstanceSpec, Network, NetworkConfig, Output};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, watch};

pub use crate::logs::Redact;

/// Lines of output kept per replica and per step for error reports.
const TAIL_LINES: usize = 20;

/// Restart backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// A replica that ran this long is healthy again: its next failure starts at
    /// `initial`.
    pub reset_after: Duration,
    /// From this many failures in a row the replica is shown as `crash-loop`.
    pub crash_loop_after: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(600),
            crash_loop_after: 3,
        }
    }
}

impl Backoff {
    /// The delay after `failures` failures in a row (1 = the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        self.initial
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Health probe timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// Longest pause between startup probes (until the first success); the first
    /// probe comes after 5 ms and the pause doubles up to this.
    pub startup_period: Duration,
    /// A replica not ready after this long is restarted.
    pub startup_timeout: Duration,
    /// Period of the liveness probe once ready.
    pub period: Duration,
    /// Timeout of one probe.
    pub timeout: Duration,
    /// Failures in a row that restart a ready replica.
    pub failure_threshold: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            startup_period: Duration::from_secs(1),
            startup_timeout: Duration::from_secs(120),
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
        }
    }
}

/// How a replica's health is checked (from `healthEndpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// `GET path` answered with 2xx or 3xx.
    Http {
        /// Port on the replica.
        port: u16,
        /// Request path.
        path: String,
    },
    /// A TCP connection is accepted (also used for `https://` endpoints: the connection,
    /// not the certificate, is checked).
    Tcp {
        /// Port on the replica.
        port: u16,
    },
    /// A protocol exchange: `send` is written on a new connection and the replica is
    /// healthy when the reply starts with one of the `expect` prefixes (a PostgreSQL
    /// startup message answered by an authentication request, a Redis `PING` answered by
    /// `+PONG` or `-NOAUTH`). Checks the server, not only its listening socket, and —
    /// unlike a bare TCP probe — makes no server log an aborted connection.
    Exchange {
        /// Port on the replica.
        port: u16,
        /// Bytes written first.
        send: Vec<u8>,
        /// Accepted beginnings of the reply (empty: any reply).
        expect: Vec<Vec<u8>>,
    },
}

/// One service as the supervisor runs it.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    /// The service name (a DNS label).
    pub name: String,
    /// Number of replicas.
    pub replicas: u32,
    /// The instance of every replica (its `network` and `hostname` are set per replica).
    pub spec: InstanceSpec,
    /// Declared ports.
    pub ports: Vec<u16>,
    /// The health probe; `None`: ready as soon as it runs.
    pub probe: Option<Probe>,
}

impl ServiceDef {
    /// The definition of a `ci.yml` service: its instance from
    /// [`InstanceSpec::for_service`] (env already rendered by the host), its ports, and a
    /// probe from `healthEndpoint` (absent: a TCP probe on the first port, or none for a
    /// service without ports). Refuses a health endpoint on an undeclared port, and ports
    /// below 1024 for Reactives.
    pub fn from_service(
        service: &landscape_spec::Service,
        app_dir: &std::path::Path,
        env: Vec<(String, String)>,
        plans: Option<&landscape_spec::PlanCatalogue>,
    ) -> Result<ServiceDef> {
        Self::from_service_with_image(service, app_dir, env, plans, None)
    }

    /// [`ServiceDef::from_service`] for a Managed Container whose `image` the host has
    /// resolved ([`crate::image::ImageStore::resolve`]): the replicas run on the image's
    /// root filesystem ([`InstanceSpec::use_image`]).
    pub fn from_service_with_image(
        service: &landscape_spec::Service,
        app_dir: &std::path::Path,
        env: Vec<(String, String)>,
        plans: Option<&landscape_spec::PlanCatalogue>,
        image: Option<&crate::image::Image>,
    ) -> Result<ServiceDef> {
        use landscape_spec::{HealthScheme, ServiceKind};
        let name = service.name.value.clone();
        let mut spec = InstanceSpec::for_service(service, app_dir, env, plans)?;
        if let Some(image) = image {
            spec.use_image(image, service.run_as_user.is_none());
        }
        let ports: Vec<u16> = service
            .network
            .iter()
            .flat_map(|n| n.ports.iter().map(|p| p.port.value))
            .collect();
        if service.kind() == ServiceKind::Reactive {
            if let Some(p) = ports.iter().find(|p| **p < 1024) {
                return Err(Error::InvalidSpec(format!(
                    "service {name:?}: port {p} is privileged; reactive services can bind 1024-65535"
                )));
            }
        }
        let probe = match &service.health_endpoint {
            Some(written) => {
                let h = landscape_spec::HealthEndpoint::parse(written)
                    .map_err(|e| Error::InvalidSpec(format!("service {name:?}: {e}")))?;
                if !ports.is_empty() && !ports.contains(&h.port) {
                    return Err(Error::InvalidSpec(format!(
                        "service {name:?}: healthEndpoint {} uses port {}, which the service does not declare (ports: {}); add it under network.ports or fix the endpoint",
                        written.value,
                        h.port,
                        ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                    )));
                }
                Some(match h.scheme {
                    HealthScheme::Http => Probe::Http {
                        port: h.port,
                        path: h.path,
                    },
                    HealthScheme::Https | HealthScheme::Tcp => Probe::Tcp { port: h.port },
                })
            }
            None => ports.first().map(|p| Probe::Tcp { port: *p }),
        };
        Ok(ServiceDef {
            name,
            replicas: service.replicas(),
            spec,
            ports,
            probe,
        })
    }
}

impl ServiceDef {
    /// A digest of what the replicas run (command, image, mounts, ports, probe, env
    /// *names*; not the env values, which may be secrets, nor replicas and limits), for
    /// the record: FNV-1a 64 of its JSON, hex.
    pub fn digest(&self) -> String {
        let mut spec = self.spec.clone();
        spec.limits = None;
        for (_, v) in spec.process.env.iter_mut() {
            v.clear();
        }
        let text = serde_json::to_string(&(&self.name, &spec, &self.ports, &self.probe))
            .unwrap_or_default();
        let mut h: u64 = 0xcbf29ce484222325;
        for b in text.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        format!("{h:016x}")
    }

    /// Whether `other` runs differently from `self` in a way that needs new instances:
    /// anything but the number of replicas and the cgroup limits (those change live).
    pub fn needs_new_instances(&self, other: &ServiceDef) -> bool {
        let shape = |d: &ServiceDef| {
            let mut spec = d.spec.clone();
            spec.limits = None;
            serde_json::to_value((&d.name, &spec, &d.ports, &d.probe)).ok()
        };
        shape(self) != shape(other)
    }
}

/// The record of a supervised landscape ([`SupervisorConfig::records`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Records {
    /// The network (its holder outlives the host).
    pub network: crate::network::NetworkRecord,
    /// Every service.
    pub services: Vec<ServiceRecord>,
}

/// One service in [`Records`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Name.
    pub name: String,
    /// [`ServiceDef::digest`] of the definition its replicas run.
    pub digest: String,
    /// Running, frozen or asleep.
    pub power: Power,
    /// Its replicas.
    pub replicas: Vec<ReplicaRecord>,
}

/// One replica in [`Records`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// Index.
    pub index: u32,
    /// Restarts so far.
    pub restarts: u32,
    /// Address on the landscape network.
    pub address: Option<Ipv4Addr>,
    /// Its instance, while one runs.
    pub instance: Option<crate::InstanceRecord>,
}

/// What [`Supervisor::adopt`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adopted {
    /// Replicas taken over as they ran (`service-N`), same processes.
    pub adopted: Vec<String>,
    /// Replicas that had ended meanwhile and were started again.
    pub restarted: Vec<String>,
    /// Services whose definition had changed meanwhile (replaced one replica at a time).
    pub replaced: Vec<String>,
    /// Services not in the new definition (stopped).
    pub removed: Vec<String>,
}

/// One replica's resource use ([`Supervisor::usage`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaUsage {
    /// Service.
    pub service: String,
    /// Index.
    pub replica: u32,
    /// CPU time, memory, processes.
    pub usage: crate::cgroup::Usage,
}

/// Usage summed over the processes in the pid namespace of `init` (a host pid).
fn proc_usage(init: i32) -> Option<crate::cgroup::Usage> {
    let pids = crate::sys::pids_in_namespace_of(init)?;
    // SAFETY: sysconf has no preconditions.
    let (tick, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as u64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
        )
    };
    let mut u = crate::cgroup::Usage::default();
    for p in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Fields after the command (which may hold spaces): state is field 3, utime 14,
        // stime 15, rss 24.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        u.cpu_time_ns += (num(14) + num(15)) * 1_000_000_000 / tick;
        u.memory_current += num(24) * page;
        u.pids_current += 1;
    }
    Some(u)
}

/// What [`Supervisor::apply`] did, by service name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Services started (new in the definition).
    pub added: Vec<String>,
    /// Services stopped (gone from the definition).
    pub removed: Vec<String>,
    /// Services whose replicas were replaced one by one (blue-green).
    pub replaced: Vec<String>,
    /// Services whose replica count changed (no other replica touched).
    pub scaled: Vec<String>,
    /// Services whose limits changed live (no restart).
    pub resized: Vec<String>,
    /// Services left as they were.
    pub unchanged: Vec<String>,
}

/// Settings of one supervised landscape.
#[derive(Clone)]
pub struct SupervisorConfig {
    /// The landscape's network (its name is the landscape's name).
    pub network: NetworkConfig,
    /// The app directory (mounted in every stage step; services carry it in their spec).
    pub app_dir: PathBuf,
    /// Log directory (created 0700; files 0600).
    pub log_dir: PathBuf,
    /// Restart backoff.
    pub backoff: Backoff,
    /// Probe timing.
    pub probes: ProbeConfig,
    /// Grace period of a stop (SIGTERM, then SIGKILL).
    pub stop_grace: Duration,
    /// During a rollout, how long a replaced replica stays up after it has left the load
    /// balancer and the DNS answers, so that requests already routed to it finish
    /// (Kubernetes users write a `preStop` sleep for this). Default 500 ms.
    pub drain: Duration,
    /// Called on every log line before it is written or sent (e.g. the vault's redactor).
    pub redact: Option<Redact>,
    /// Where the landscape's record lives (a file outside the app directory). With it,
    /// replicas are durable ([`InstanceSpec::durable`]) and the record (network, services
    /// by digest, replicas with their instance records — never an env value) is rewritten
    /// atomically on every change, so that [`Supervisor::adopt`] in a new host process
    /// takes the landscape over after this one was killed.
    pub records: Option<PathBuf>,
    /// Pre-warmed instances kept parked ([`Runtime::park`]: namespaces, root, app
    /// directory and network address ready, waiting for a command) so that a scale-up, a
    /// restart or a wake from stopped costs about one exec instead of a cold start
    /// (default 0: none). The pool is shaped like the landscape's first service without
    /// volume mounts (host base, app directory, user, limits present or not); a replica
    /// of another shape starts cold. Refilled in the background after every hand-out.
    pub pool: usize,
}

impl std::fmt::Debug for SupervisorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorConfig")
            .field("network", &self.network)
            .field("app_dir", &self.app_dir)
            .field("log_dir", &self.log_dir)
            .field("backoff", &self.backoff)
            .field("probes", &self.probes)
            .field("stop_grace", &self.stop_grace)
            .field("drain", &self.drain)
            .field("redact", &self.redact.as_ref().map(|_| "<hook>"))
            .field("pool", &self.pool)
            .finish()
    }
}

impl SupervisorConfig {
    /// Defaults for landscape `name` with its app and log directories.
    pub fn new(name: impl Into<String>, app_dir: PathBuf, log_dir: PathBuf) -> Self {
        SupervisorConfig {
            network: NetworkConfig::new(name),
            app_dir,
            log_dir,
            backoff: Backoff::default(),
            probes: ProbeConfig::default(),
            stop_grace: Duration::from_secs(10),
            drain: Duration::from_millis(500),
            redact: None,
            records: None,
            pool: 0,
        }
    }
}

/// What a replica is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicaState {
    /// Started, not yet ready.
    Starting,
    /// Running and passing its probe: in the load balancer and the DNS answers.
    Ready,
    /// Running but failing its probe: out of rotation.
    Unhealthy,
    /// Ended; restarting after a short delay.
    Restarting,
    /// Failed several times in a row; restarting with a growing delay.
    CrashLoop,
    /// Frozen while unused ([`Supervisor::freeze`]): memory kept, no CPU, out of
    /// rotation; [`Supervisor::wake`] puts it back at once.
    Frozen,
    /// Stopped by the host (also while unused, [`Supervisor::sleep`]).
    Stopped,
}

/// Whether a service runs, is frozen or is asleep (its replicas stopped while unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Power {
    /// Its replicas run (whatever their health).
    Running,
    /// Its replicas are frozen.
    Frozen,
    /// Its replicas are stopped; [`Supervisor::wake`] starts them.
    Asleep,
}

/// One replica in a [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Service name.
    pub service: String,
    /// Replica index (0-based; the hostname is `SERVICE-N`).
    pub replica: u32,
    /// State.
    pub state: ReplicaState,
    /// Host pid of the instance's init while it runs.
    pub pid: Option<i32>,
    /// Address in the landscape network while it runs.
    pub address: Option<Ipv4Addr>,
    /// Restarts so far.
    pub restarts: u32,
    /// Seconds since the current instance started.
    pub uptime_s: Option<f64>,
    /// Why the previous instance ended.
    pub last_exit: Option<String>,
    /// Last lines of output of the previous instance (crash reports).
    pub last_lines: Vec<String>,
    /// Milliseconds until the next start (restarting / crash loop).
    pub next_start_in_ms: Option<u64>,
    /// The last failed health probe of the running instance (`GET /health answered 404`,
    /// `connection refused`), until a probe succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
}

/// A snapshot of the whole landscape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Landscape name.
    pub landscape: String,
    /// Every replica, by service (in definition order) and index.
    pub replicas: Vec<ReplicaStatus>,
}

/// Something that happened, with its time (RFC 3339 UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub time: String,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A stage step started.
    StepStarted {
        /// `prepare` or `test`.
        stage: String,
        /// The step's name (or its command).
        step: String,
    },
    /// A line of a step's output.
    StepOutput {
        /// Stage.
        stage: String,
        /// Step.
        step: String,
        /// The line.
        line: LogLine,
    },
    /// A step ended.
    StepFinished {
        /// Stage.
        stage: String,
        /// Step.
        step: String,
        /// Its exit status (128+N for signal N).
        exit_code: i32,
    },
    /// A replica's instance is starting.
    ReplicaStarting {
        /// Service.
        service: String,
        /// Index.
        replica: u32,
        /// Its address.
        address: Ipv4Addr,
    },
    /// A replica passes its probe (in rotation).
    ReplicaReady {
        /// Service.
        service: String,
        /// Index.
        replica: u32,
    },
    /// A replica fails its probe (out of rotation).
    ReplicaUnhealthy {
        /// Service.
        service: String,
        /// Index.
        replica: u32,
        /// What failed.
        reason: String,
    },
    /// A replica's instance ended.
    ReplicaExited {
        /// Service.
        service: String,
        /// Index.
        replica: u32,
        /// How.
        exit: Exit,
    },
    /// A replica will be started again.
    ReplicaRestarting {
        /// Service.
        service: String,
        /// Index.
        replica: u32,
        /// After this many milliseconds.
        in_ms: u64,
        /// Restarts so far.
        restarts: u32,
        /// Failed several times in a row.
        crash_loop: bool,
    },
    /// A replica was stopped by the host.
    ReplicaStopped {
        /// Service.
        service: String,
        /// Index.
        replica: u32,
    },
    /// [`Supervisor::apply`] starts replacing a service's replicas (one at a time, each
    /// new one ready before its predecessor leaves the load balancer).
    RolloutStarted {
        /// Service.
        service: String,
    },
    /// A rollout ended: every replica runs the new definition, or (`error`) the old ones
    /// were kept.
    RolloutFinished {
        /// Service.
        service: String,
        /// Why the rollout was abandoned, if it was.
        error: Option<String>,
    },
    /// A replica was frozen while unused.
    ReplicaFrozen {
        /// Service.
        service: String,
        /// Index.
        replica: u32,
    },
    /// A service was woken (a request came for it): frozen replicas thawed or stopped
    /// ones started.
    ServiceWoken {
        /// Service.
        service: String,
        /// From `frozen` or `asleep`.
        from: Power,
    },
    /// Progress of an image a service runs: pulled, unpacked or found in the cache
    /// (published by the host that resolves images, see [`Supervisor::publish`]).
    ImageProgress {
        /// Service.
        service: String,
        /// The image reference as the spec writes it.
        image: String,
        /// What happened ([`crate::image::Progress`] as text).
        message: String,
    },
    /// A line of a replica's output.
    Log {
        /// Service.
        service: String,
        /// Index.
        replica: u32,
        /// The line (already redacted).
        line: LogLine,
    },
}

fn event(kind: EventKind) -> Event {
    Event::now(kind)
}

impl Event {
    /// An event that happens now.
    pub fn now(kind: EventKind) -> Event {
        Event {
            time: crate::logs::rfc3339(SystemTime::now()),
            kind,
        }
    }
}

/// A stage step that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{stage} step {step:?} failed with exit code {exit_code}{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
pub struct StageFailure {
    /// Stage.
    pub stage: String,
    /// Step name (or command).
    pub step: String,
    /// Exit status.
    pub exit_code: i32,
    /// Why it could not run, when it did not (command not found, setup error).
    pub reason: Option<String>,
    /// Its last lines of output.
    pub last_lines: Vec<String>,
}

/// One step of a stage: a display name and a shell command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDef {
    /// Name shown in events (the command when the step has none).
    pub name: String,
    /// Run with `/bin/sh -c` in the app directory.
    pub command: String,
}

impl StepDef {
    /// The steps of a `ci.yml` stage.
    pub fn from_stage(stage: &landscape_spec::Stage) -> Vec<StepDef> {
        stage
            .steps
            .iter()
            .map(|s| StepDef {
                name: s
                    .name
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_else(|| s.command.value.clone()),
                command: s.command.value.clone(),
            })
            .collect()
    }
}

#[derive(Debug)]
struct ReplicaInner {
    state: ReplicaState,
    pid: Option<i32>,
    address: Option<Ipv4Addr>,
    restarts: u32,
    started: Option<Instant>,
    last_exit: Option<String>,
    last_lines: Vec<String>,
    next_start: Option<Instant>,
    ready: bool,
    /// See [`ReplicaStatus::probe`].
    probe: Option<String>,
    control: Option<InstanceControl>,
    cgroups: Option<crate::cgroup::Cgroups>,
    /// The running instance's record (durable replicas).
    record: Option<crate::InstanceRecord>,
}

struct Replica {
    service: String,
    index: u32,
    inner: Mutex<ReplicaInner>,
    /// Set when the host stops the replica; the runner ends.
    stopping: AtomicBool,
    wake: Condvar,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// An instance adopted from an earlier host, run first instead of a new one.
    adopted: Mutex<Option<(Instance, Ipv4Addr)>>,
}

struct Svc {
    power: Power,
    def: ServiceDef,
    replicas: Vec<Arc<Replica>>,
    ready_tx: watch::Sender<Vec<Ipv4Addr>>,
}

struct Inner {
    cfg: SupervisorConfig,
    runtime: Arc<Runtime>,
    network: Network,
    services: Mutex<Vec<Svc>>,
    events: broadcast::Sender<Event>,
    shut: AtomicBool,
    pool: Mutex<PoolState>,
    /// The step of a stage that runs now ([`Supervisor::run_stage`]): stopped by
    /// [`Supervisor::shutdown`].
    stage: Mutex<Option<crate::InstanceControl>>,
    /// Record writes as a group commit: every save asks for a generation
    /// (`records_asked`); the lock holds the last generation written. A save returns once
    /// a snapshot taken after its request is on disk — its own or a later writer's — so
    /// runner threads saving at once write one whole snapshot each (one temp file,
    /// renamed) and a burst of saves costs about two writes, not one each.
    records_asked: std::sync::atomic::AtomicU64,
    records_write: Mutex<u64>,
}

/// The parked instances of [`SupervisorConfig::pool`].
#[derive(Default)]
struct PoolState {
    /// The shape they are parked with (set by the first [`Supervisor::start`]).
    template: Option<InstanceSpec>,
    parked: Vec<crate::Parked>,
    /// A refill thread runs.
    filling: bool,
}

/// A supervised landscape. Dropping it stops everything (like [`Supervisor::shutdown`]).
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("landscape", &self.inner.cfg.network.name)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Supervisor {
    /// Creates the landscape's network and log directory; runs nothing yet (see
    /// [`Supervisor::run_stage`] and [`Supervisor::start`]).
    pub fn new(runtime: Arc<Runtime>, cfg: SupervisorConfig) -> Result<Supervisor> {
        crate::network::private_dir(&cfg.log_dir)?;
        let network = Network::create(&runtime, cfg.network.clone())?;
        let (events, _) = broadcast::channel(4096);
        Ok(Supervisor {
            inner: Arc::new(Inner {
                cfg,
                runtime,
                network,
                services: Mutex::new(Vec::new()),
                events,
                shut: AtomicBool::new(false),
                pool: Mutex::new(PoolState::default()),
                stage: Mutex::new(None),
                records_asked: std::sync::atomic::AtomicU64::new(0),
                records_write: Mutex::new(0),
            }),
        })
    }

    /// The landscape network.
    pub fn network(&self) -> &Network {
        &self.inner.network
    }

    /// The runtime its instances run on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.runtime
    }

    /// The configuration.
    pub fn config(&self) -> &SupervisorConfig {
        &self.inner.cfg
    }

    /// Subscribes to events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Sends `kind` to every subscriber, in the same stream as the supervisor's own
    /// events: for the host's steps around supervision (e.g. [`EventKind::ImageProgress`]
    /// while it resolves a new image for [`Supervisor::apply`]).
    pub fn publish(&self, kind: EventKind) {
        self.inner.emit(kind);
    }

    /// Runs the steps of `stage` one after the other in instances of the shared base with
    /// the app directory (output streamed as [`EventKind::StepOutput`] and logged to
    /// `<log_dir>/<stage>.log`); stops at the first failing step.
    pub fn run_stage(
        &self,
        stage: &str,
        steps: &[StepDef],
        env: &[(String, String)],
    ) -> std::result::Result<(), StageFailure> {
        for step in steps {
            let fail = |code: i32, reason: Option<String>, lines: Vec<String>| StageFailure {
                stage: stage.to_string(),
                step: step.name.clone(),
                exit_code: code,
                reason,
                last_lines: lines,
            };
            if self.inner.shut.load(Ordering::SeqCst) {
                return Err(fail(
                    125,
                    Some("not run: the landscape is stopping".into()),
                    Vec::new(),
                ));
            }
            self.inner.emit(EventKind::StepStarted {
                stage: stage.into(),
                step: step.name.clone(),
            });
            let mut spec = InstanceSpec::new(stage, Process::shell(&step.command));
            spec.app_dir = Some(self.inner.cfg.app_dir.clone());
            spec.process.env = env.to_vec();
            let logs = self.inner.log_config(stage);
            let mut inst = self
                .inner
                .runtime
                .spawn(&spec, Output::Logs(logs))
                .map_err(|e| fail(125, Some(e.to_string()), Vec::new()))?;
            let tail = Arc::new(Mutex::new(VecDeque::new()));
            let fwd = self.inner.forward_logs(&inst, tail.clone(), {
                let (stage, step) = (stage.to_string(), step.name.clone());
                move |line| EventKind::StepOutput {
                    stage: stage.clone(),
                    step: step.clone(),
                    line,
                }
            });
            // A shutdown from now on stops the step (and one that came first, at once).
            *lock(&self.inner.stage) = inst.control().ok();
            if self.inner.shut.load(Ordering::SeqCst) {
                let _ = inst.kill();
            }
            let exit = inst.wait().unwrap_or_else(|e| Exit::failed(e.to_string()));
            *lock(&self.inner.stage) = None;
            drop(inst);
            if let Some(t) = fwd {
                let _ = t.join();
            }
            let code = exit.status_code();
            self.inner.emit(EventKind::StepFinished {
                stage: stage.into(),
                step: step.name.clone(),
                exit_code: code,
            });
            if !exit.success() {
                let lines = lock(&tail).iter().cloned().collect();
                return Err(fail(code, exit.error.clone(), lines));
            }
        }
        Ok(())
    }

    /// Starts every replica of `services` (all at once, in parallel). Service names must be
    /// unique and not yet running.
    pub fn start(&self, services: Vec<ServiceDef>) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        {
            let running = lock(&self.inner.services);
            for d in &services {
                if !seen.insert(d.name.clone()) || running.iter().any(|s| s.def.name == d.name) {
                    return Err(Error::InvalidSpec(format!(
                        "service {:?} is defined twice; give each service its own name",
                        d.name
                    )));
                }
            }
            let others: u64 = running.iter().map(|s| u64::from(s.def.replicas)).sum();
            let new: u64 = services.iter().map(|d| u64::from(d.replicas)).sum();
            let what = match services.as_slice() {
                [one] => format!("service {:?}: {} replicas", one.name, one.replicas),
                _ => format!("{new} replicas"),
            };
            self.check_capacity(&what, others + new, others)?;
        }
        for def in services {
            let (ready_tx, _) = watch::channel(Vec::new());
            let n = def.replicas;
            let mut svc = Svc {
                power: Power::Running,
                def,
                replicas: Vec::new(),
                ready_tx,
            };
            self.inner.set_pool_template(&svc.def);
            for i in 0..n {
                svc.replicas.push(self.inner.launch(&svc.def, i));
            }
            let mut all = lock(&self.inner.services);
            // Stopping meanwhile: shutdown has taken the replicas it stops; these go now.
            if self.inner.shut.load(Ordering::SeqCst) {
                drop(all);
                self.inner.stop_replicas(&svc.replicas);
                return Err(stopping());
            }
            all.push(svc);
        }
        self.inner.refill_pool();
        Ok(())
    }

    /// Host pids of the parked instances waiting in the pool ([`SupervisorConfig::pool`]).
    pub fn pooled(&self) -> Vec<i32> {
        lock(&self.inner.pool)
            .parked
            .iter()
            .map(crate::Parked::pid)
            .collect()
    }

    /// The ready replicas' addresses of `service`, kept current (for the router's
    /// endpoint source). `None` for an unknown service.
    pub fn ready(&self, service: &str) -> Option<watch::Receiver<Vec<Ipv4Addr>>> {
        lock(&self.inner.services)
            .iter()
            .find(|s| s.def.name == service)
            .map(|s| s.ready_tx.subscribe())
    }

    /// The definitions of the running services.
    pub fn services(&self) -> Vec<ServiceDef> {
        lock(&self.inner.services)
            .iter()
            .map(|s| s.def.clone())
            .collect()
    }

    /// A snapshot of every replica.
    pub fn status(&self) -> Status {
        let now = Instant::now();
        let services = lock(&self.inner.services);
        let mut replicas = Vec::new();
        for s in services.iter() {
            for r in &s.replicas {
                let i = lock(&r.inner);
                replicas.push(ReplicaStatus {
                    service: r.service.clone(),
                    replica: r.index,
                    state: i.state,
                    pid: i.pid,
                    address: i.address,
                    restarts: i.restarts,
                    uptime_s: i.started.map(|t| (now - t).as_secs_f64()),
                    last_exit: i.last_exit.clone(),
                    last_lines: i.last_lines.clone(),
                    next_start_in_ms: i
                        .next_start
                        .map(|t| t.saturating_duration_since(now).as_millis() as u64),
                    probe: i.probe.clone(),
                });
            }
        }
        Status {
            landscape: self.inner.cfg.network.name.clone(),
            replicas,
        }
    }

    /// Changes the number of replicas of `service`: new ones start, the highest-numbered
    /// ones stop; the others are not touched.
    pub fn scale(&self, service: &str, replicas: u32) -> Result<()> {
        let removed = {
            let mut services = lock(&self.inner.services);
            // (Checked under the lock shutdown takes the replicas with.)
            if self.inner.shut.load(Ordering::SeqCst) {
                return Err(stopping());
            }
            if !services.iter().any(|s| s.def.name == service) {
                return Err(unknown_service(service));
            }
            let others: u64 = services
                .iter()
                .filter(|s| s.def.name != service)
                .map(|s| u64::from(s.def.replicas))
                .sum();
            self.check_capacity(
                &format!("service {service:?}: {replicas} replicas"),
                others + u64::from(replicas),
                others,
            )?;
            let svc = services
                .iter_mut()
                .find(|s| s.def.name == service)
                .ok_or_else(|| unknown_service(service))?;
            svc.def.replicas = replicas;
            let have = svc.replicas.len() as u32;
            for i in have..replicas {
                let r = self.inner.launch(&svc.def, i);
                svc.replicas.push(r);
            }
            let keep = (replicas as usize).min(svc.replicas.len());
            svc.replicas.split_off(keep)
        };
        self.inner.stop_replicas(&removed);
        Ok(())
    }

    /// Changes the cgroup limits of every running replica of `service` at once (no restart)
    /// and of the replicas it starts later. Fails where limits are not enforced.
    pub fn set_limits(&self, service: &str, limits: Limits) -> Result<()> {
        let mut services = lock(&self.inner.services);
        let svc = services
            .iter_mut()
            .find(|s| s.def.name == service)
            .ok_or_else(|| unknown_service(service))?;
        svc.def.spec.limits = Some(limits);
        for r in &svc.replicas {
            let (cgroups, running) = {
                let i = lock(&r.inner);
                (i.cgroups.clone(), i.pid.is_some())
            };
            if let Some(cg) = cgroups {
                cg.set_limits(&limits)?;
            } else if running {
                return Err(Error::LimitsNotEnforced(format!(
                    "service {service:?}: replica {} runs without cgroups (not root and no delegated cgroup tree)",
                    r.index
                )));
            }
        }
        Ok(())
    }

    /// Replaces every replica of `service` with a fresh one, one at a time, each new one
    /// ready before its predecessor leaves the load balancer (as [`Supervisor::apply`]
    /// replaces a changed service): a restart without failed requests. A new replica not
    /// ready within `ready_timeout` stops the restart (the others keep serving) with its
    /// last exit and output. Blocks until done.
    pub fn restart_rolling(&self, service: &str, ready_timeout: Duration) -> Result<()> {
        let def = self
            .services()
            .into_iter()
            .find(|d| d.name == service)
            .ok_or_else(|| unknown_service(service))?;
        self.inner.rollout(def, ready_timeout)?;
        self.inner.save_records();
        Ok(())
    }

    /// Restarts every replica of `service` (each is stopped and started again through
    /// the restart path; its restart count grows).
    pub fn restart(&self, service: &str) -> Result<()> {
        let services = lock(&self.inner.services);
        let svc = services
            .iter()
            .find(|s| s.def.name == service)
            .ok_or_else(|| unknown_service(service))?;
        for r in &svc.replicas {
            let i = lock(&r.inner);
            if let Some(c) = &i.control {
                c.stop(self.inner.cfg.stop_grace)?;
            }
        }
        Ok(())
    }

    /// CPU and memory of every running replica: from its cgroups where it has them,
    /// otherwise summed over the processes in its pid namespace from `/proc` (CPU time,
    /// resident memory, process count; no peak).
    pub fn usage(&self) -> Vec<ReplicaUsage> {
        let replicas: Vec<Arc<Replica>> = lock(&self.inner.services)
            .iter()
            .flat_map(|s| s.replicas.iter().cloned())
            .collect();
        replicas
            .iter()
            .filter_map(|r| {
                let (pid, cgroups) = {
                    let i = lock(&r.inner);
                    (i.pid?, i.cgroups.clone())
                };
                let usage = match cgroups {
                    Some(cg) => cg.usage(),
                    None => proc_usage(pid)?,
                };
                Some(ReplicaUsage {
                    service: r.service.clone(),
                    replica: r.index,
                    usage,
                })
            })
            .collect()
    }

    /// Takes over a landscape whose host was killed, from its record
    /// ([`SupervisorConfig::records`]): the network's holder, and every replica whose
    /// instance still runs — the same processes, no restart; their logs continue, probes
    /// and restarts resume. Replicas that ended meanwhile start again (a restart), a
    /// service whose definition (`services`, made afresh by the host from its ci.yml and
    /// secrets) has changed meanwhile is replaced one replica at a time, services no
    /// longer defined are stopped, new ones start. Fails when there is no record or the
    /// network is gone (then start afresh with [`Supervisor::new`]).
    pub fn adopt(
        runtime: Arc<Runtime>,
        cfg: SupervisorConfig,
        services: Vec<ServiceDef>,
    ) -> Result<(Supervisor, Adopted)> {
        let path = cfg
            .records
            .clone()
            .ok_or_else(|| Error::InvalidSpec("adopt needs SupervisorConfig::records".into()))?;
        let text = std::fs::read(&path)
            .map_err(|e| Error::io(format!("read the record {}", path.display()), e))?;
        let rec: Records = serde_json::from_slice(&text).map_err(|e| {
            Error::InvalidSpec(format!("the record {} is damaged: {e}", path.display()))
        })?;
        crate::network::private_dir(&cfg.log_dir)?;
        let network = Network::adopt(&rec.network)?;
        let (events, _) = broadcast::channel(4096);
        let sup = Supervisor {
            inner: Arc::new(Inner {
                cfg,
                runtime: runtime.clone(),
                network,
                services: Mutex::new(Vec::new()),
                events,
                shut: AtomicBool::new(false),
                pool: Mutex::new(PoolState::default()),
                stage: Mutex::new(None),
                records_asked: std::sync::atomic::AtomicU64::new(0),
                records_write: Mutex::new(0),
            }),
        };
        let mut report = Adopted::default();
        let mut changed = Vec::new();
        let mut fresh = Vec::new();
        let mut orphans = Vec::new();
        for srec in &rec.services {
            let def = services.iter().find(|d| d.name == srec.name);
            let mut replicas = Vec::new();
            for rr in &srec.replicas {
                let Some(irec) = &rr.instance else { continue };
                match runtime.adopt(irec, sup.inner.cfg.redact.clone()) {
                    Ok(inst) => {
                        let addr = rr.address.unwrap_or(Ipv4Addr::UNSPECIFIED);
                        sup.inner.network.reserve(addr);
                        report.adopted.push(format!("{}-{}", srec.name, rr.index));
                        replicas.push((rr.index, rr.restarts, inst, addr));
                    }
                    Err(_) => report.restarted.push(format!("{}-{}", srec.name, rr.index)),
                }
            }
            let Some(def) = def else {
                orphans.push((srec.name.clone(), replicas));
                continue;
            };
            // The live replica count wins (a `scale` since the start); a later apply of
            // the file changes it.
            let mut def = def.clone();
            if !srec.replicas.is_empty() {
                def.replicas = srec.replicas.len() as u32;
            }
            let def = &def;
            let (ready_tx, _) = watch::channel(Vec::new());
            let svc = Svc {
                power: if srec.power == Power::Frozen && !replicas.is_empty() {
                    Power::Frozen
                } else {
                    Power::Running
                },
                def: def.clone(),
                replicas: Vec::new(),
                ready_tx,
            };
            let mut adopted: BTreeMap<u32, (u32, Instance, Ipv4Addr)> = replicas
                .into_iter()
                .map(|(i, n, inst, a)| (i, (n, inst, a)))
                .collect();
            // Listed before its replicas run (a runner looks its service up).
            let svc_def = svc.def.clone();
            lock(&sup.inner.services).push(svc);
            for i in 0..def.replicas {
                let (restarts, initial) = match adopted.remove(&i) {
                    Some((n, inst, a)) => (n, Some((inst, a))),
                    None => (
                        srec.replicas
                            .iter()
                            .find(|r| r.index == i)
                            .map_or(0, |r| r.restarts + 1),
                        None,
                    ),
                };
                let r = sup.inner.launch_with(&svc_def, i, initial, restarts);
                if let Some(s) = lock(&sup.inner.services)
                    .iter_mut()
                    .find(|s| s.def.name == svc_def.name)
                {
                    s.replicas.push(r);
                }
            }
            // Replicas beyond the (new) count: adopted to be stopped.
            for (i, (n, inst, a)) in adopted {
                orphans.push((srec.name.clone(), vec![(i, n, inst, a)]));
            }
            if srec.digest != def.digest() {
                changed.push(def.clone());
            }
        }
        for def in &services {
            if !rec.services.iter().any(|s| s.name == def.name) {
                fresh.push(def.clone());
            }
        }
        for (name, replicas) in orphans {
            for (_, _, mut inst, a) in replicas {
                let _ = inst.stop(sup.inner.cfg.stop_grace);
                sup.inner.network.release(a);
            }
            if !services.iter().any(|d| d.name == name) {
                report.removed.push(name);
            }
        }
        sup.start(fresh)?;
        for def in changed {
            let name = def.name.clone();
            sup.inner.rollout(def, Duration::from_secs(120))?;
            report.replaced.push(name);
        }
        sup.inner.save_records();
        Ok((sup, report))
    }

    /// Whether `service` runs, is frozen or asleep; `None` for an unknown service.
    pub fn power(&self, service: &str) -> Option<Power> {
        lock(&self.inner.services)
            .iter()
            .find(|s| s.def.name == service)
            .map(|s| s.power)
    }

    /// Freezes every replica of `service` (off-when-unused, first step): each leaves the
    /// load balancer and the DNS answers, then its processes are frozen (the cgroup
    /// freezer; SIGSTOP where the runtime has no cgroups). Its probes pause. No-op unless
    /// the service is running.
    pub fn freeze(&self, service: &str) -> Result<()> {
        let replicas = {
            let mut all = lock(&self.inner.services);
            let svc = all
                .iter_mut()
                .find(|s| s.def.name == service)
                .ok_or_else(|| unknown_service(service))?;
            if svc.power != Power::Running {
                return Ok(());
            }
            svc.power = Power::Frozen;
            svc.replicas.clone()
        };
        // Only ready replicas are frozen (and come back ready); one that is starting or
        // failing its probe goes on as it is.
        let mut frozen = Vec::new();
        for r in &replicas {
            let mut i = lock(&r.inner);
            if i.state == ReplicaState::Ready && i.pid.is_some() {
                i.ready = false;
                i.state = ReplicaState::Frozen;
                frozen.push(r.clone());
            }
        }
        self.inner.publish();
        for r in &frozen {
            let control = lock(&r.inner).control.clone();
            if let Some(c) = control {
                c.freeze()?;
                self.inner.emit(EventKind::ReplicaFrozen {
                    service: r.service.clone(),
                    replica: r.index,
                });
            }
        }
        Ok(())
    }

    /// Stops every replica of `service` but keeps the service (off-when-unused, second
    /// step: memory released, the app directory stays); [`Supervisor::wake`] starts them
    /// again. No-op when it is already asleep.
    pub fn sleep(&self, service: &str) -> Result<()> {
        let replicas = {
            let mut all = lock(&self.inner.services);
            let svc = all
                .iter_mut()
                .find(|s| s.def.name == service)
                .ok_or_else(|| unknown_service(service))?;
            if svc.power == Power::Asleep {
                return Ok(());
            }
            svc.power = Power::Asleep;
            svc.replicas.clone()
        };
        // Frozen processes are thawed by the helper before they are stopped.
        self.inner.stop_replicas(&replicas);
        self.inner.save_records();
        Ok(())
    }

    /// Brings `service` back: frozen replicas are thawed and back in rotation at once (they
    /// were ready when frozen); an asleep service's replicas start and join the rotation
    /// as their probes pass. Returns without waiting (watch [`Supervisor::ready`]). No-op
    /// for a running service.
    pub fn wake(&self, service: &str) -> Result<()> {
        let (from, replicas, def) = {
            let mut all = lock(&self.inner.services);
            let svc = all
                .iter_mut()
                .find(|s| s.def.name == service)
                .ok_or_else(|| unknown_service(service))?;
            let from = svc.power;
            svc.power = Power::Running;
            (from, svc.replicas.clone(), svc.def.clone())
        };
        match from {
            Power::Running => return Ok(()),
            Power::Frozen => {
                for r in &replicas {
                    let control = lock(&r.inner).control.clone();
                    if let Some(c) = control {
                        c.thaw()?;
                    }
                }
                for r in &replicas {
                    let mut i = lock(&r.inner);
                    if i.state == ReplicaState::Frozen {
                        i.state = ReplicaState::Ready;
                        i.ready = true;
                    }
                }
                self.inner.publish();
            }
            Power::Asleep => {
                let fresh: Vec<Arc<Replica>> = (0..def.replicas)
                    .map(|i| self.inner.launch(&def, i))
                    .collect();
                let mut all = lock(&self.inner.services);
                if let Some(svc) = all.iter_mut().find(|s| s.def.name == service) {
                    svc.replicas = fresh;
                }
            }
        }
        self.inner.emit(EventKind::ServiceWoken {
            service: service.to_string(),
            from,
        });
        self.inner.save_records();
        Ok(())
    }

    /// Brings the running landscape to `services` (a new definition of the whole set),
    /// touching only what changed: new services start, missing ones stop, a changed
    /// replica count scales (no other replica touched), changed limits apply live, and a
    /// service whose instances must change ([`ServiceDef::needs_new_instances`]) is
    /// replaced **one replica at a time**: the new replica starts beside the old one, and
    /// only once it is ready does the old one leave the load balancer and the DNS answers,
    /// drain ([`SupervisorConfig::drain`]) and stop. A new replica that is not ready within
    /// `ready_timeout` (or crash-loops) abandons that service's rollout: it is stopped, the
    /// old replicas keep serving, the old definition stays, and the error names the
    /// service with the replica's last exit and output; the other services are still
    /// applied. Blocks until done.
    pub fn apply(&self, services: Vec<ServiceDef>, ready_timeout: Duration) -> Result<Applied> {
        let mut seen = std::collections::BTreeSet::new();
        for d in &services {
            if !seen.insert(d.name.clone()) {
                return Err(Error::InvalidSpec(format!(
                    "service {:?} is defined twice; give each service its own name",
                    d.name
                )));
            }
        }
        let total: u64 = services.iter().map(|d| u64::from(d.replicas)).sum();
        self.check_capacity(
            &format!("the edited landscape's {total} replicas"),
            total,
            0,
        )?;
        let mut applied = Applied::default();
        let current = self.services();
        let gone: Vec<String> = current
            .iter()
            .filter(|c| !services.iter().any(|d| d.name == c.name))
            .map(|c| c.name.clone())
            .collect();
        for name in gone {
            let removed = {
                let mut all = lock(&self.inner.services);
                let pos = all.iter().position(|s| s.def.name == name);
                pos.map(|p| all.remove(p))
            };
            if let Some(svc) = removed {
                self.inner.stop_replicas(&svc.replicas);
                svc.ready_tx.send_replace(Vec::new());
                self.inner.publish();
            }
            applied.removed.push(name);
        }
        let mut added = Vec::new();
        let mut failures = Vec::new();
        for def in services {
            let Some(old) = current.iter().find(|c| c.name == def.name) else {
                applied.added.push(def.name.clone());
                added.push(def);
                continue;
            };
            if old.needs_new_instances(&def) {
                match self.inner.rollout(def, ready_timeout) {
                    Ok(name) => applied.replaced.push(name),
                    Err(e) => failures.push(e.to_string()),
                }
                continue;
            }
            let mut touched = false;
            if old.spec.limits != def.spec.limits {
                if let Some(l) = def.spec.limits {
                    self.set_limits(&def.name, l)?;
                    applied.resized.push(def.name.clone());
                    touched = true;
                }
            }
            if old.replicas != def.replicas {
                self.scale(&def.name, def.replicas)?;
                applied.scaled.push(def.name.clone());
                touched = true;
            }
            if !touched {
                applied.unchanged.push(def.name.clone());
            }
        }
        self.start(added)?;
        self.inner.save_records();
        if failures.is_empty() {
            Ok(applied)
        } else {
            Err(Error::Start {
                instance: "rollout".into(),
                message: failures.join("; "),
            })
        }
    }

    /// Stops every replica (in parallel; each leaves the DNS answers and the load balancer
    /// before it is signalled), waits for their helpers' tear-down ([`crate::settle`]) and
    /// removes the network. Idempotent.
    pub fn shutdown(&self) {
        if self.inner.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(step) = lock(&self.inner.stage).take() {
            let _ = step.stop(self.inner.cfg.stop_grace);
        }
        let all: Vec<Arc<Replica>> = lock(&self.inner.services)
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.replicas))
            .collect();
        self.inner.stop_replicas(&all);
        for s in lock(&self.inner.services).iter() {
            s.ready_tx.send_replace(Vec::new());
        }
        self.inner.drain_pool();
        // The helpers release their instances' mounts, cgroups and veth pairs after the
        // exits are reported: "stopped" means they are done (and the veths are gone
        // before the network is).
        if !crate::settle(self.inner.cfg.stop_grace + Duration::from_secs(5)) {
            tracing::warn!(landscape = %self.inner.cfg.network.name, "helpers still tearing down after the stop");
        }
        self.inner.network.shutdown();
        if let Some(p) = &self.inner.cfg.records {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Supervisor {
    /// Refuses a change that would leave the landscape with `total` replicas (with the
    /// pool's parked instances) when the network has no address for each: checked before
    /// anything starts, so the extra replicas do not crash-loop on "all addresses in use".
    /// `what` names the change and `others` the replicas it keeps elsewhere.
    fn check_capacity(&self, what: &str, total: u64, others: u64) -> Result<()> {
        let net = &self.inner.network;
        let cap = u64::from(net.capacity());
        let pool = self.inner.cfg.pool as u64;
        if total + pool <= cap {
            return Ok(());
        }
        let cfg = net.config();
        let mut taken = Vec::new();
        if others > 0 {
            taken.push(format!("{others} taken by other replicas"));
        }
        if pool > 0 {
            taken.push(format!("{pool} kept for the pool"));
        }
        let taken = if taken.is_empty() {
            String::new()
        } else {
            format!(" ({})", taken.join(", "))
        };
        let why = format!(
            "{what} would make {total} in all, more than the {cap} addresses of the landscape network {}/{}{taken}; use at most {} here",
            cfg.subnet,
            cfg.prefix,
            cap.saturating_sub(others + pool)
        );
        Err(Error::InvalidSpec(why))
    }
}

fn stopping() -> Error {
    Error::InvalidSpec("the landscape is stopping".into())
}

fn unknown_service(service: &str) -> Error {
    Error::InvalidSpec(format!("no service {service:?} in this landscape"))
}

impl Inner {
    /// The pool's shape: the first service's instance (one without extra mounts: not a
    /// managed server with its data directory), without its command.
    fn set_pool_template(&self, def: &ServiceDef) {
        if self.cfg.pool == 0 || !def.spec.mounts.is_empty() {
            return;
        }
        let mut p = lock(&self.pool);
        if p.template.is_none() {
            let mut spec = def.spec.clone();
            spec.name = "pool".into();
            spec.hostname = None;
            spec.process = Process::default();
            spec.network = None;
            spec.durable = self.cfg.records.is_some();
            p.template = Some(spec);
        }
    }

    /// A parked instance that fits `spec` (whose network is set to the parked one's),
    /// taken out of the pool; the pool refills in the background.
    fn take_parked(self: &Arc<Self>, spec: &InstanceSpec) -> Option<crate::Parked> {
        let taken = {
            let mut p = lock(&self.pool);
            let i = p.parked.iter().position(|pk| {
                let mut s = spec.clone();
                s.network = pk.spec().network.clone();
                pk.fits(&s)
            })?;
            p.parked.remove(i)
        };
        self.refill_pool();
        Some(taken)
    }

    /// Parks instances until the pool is full (one background thread at a time).
    fn refill_pool(self: &Arc<Self>) {
        let template = {
            let mut p = lock(&self.pool);
            if p.filling || p.parked.len() >= self.cfg.pool {
                return;
            }
            let Some(t) = p.template.clone() else { return };
            p.filling = true;
            t
        };
        let me = self.clone();
        std::thread::spawn(move || {
            loop {
                if me.shut.load(Ordering::SeqCst) || lock(&me.pool).parked.len() >= me.cfg.pool {
                    break;
                }
                let addr = match me.network.allocate() {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("pool: {e}");
                        break;
                    }
                };
                let mut spec = template.clone();
                spec.network = Some(me.network.attachment(addr));
                match me.runtime.park(&spec) {
                    Ok(pk) => {
                        let mut p = lock(&me.pool);
                        if me.shut.load(Ordering::SeqCst) {
                            drop(p);
                            drop(pk);
                            me.network.release(addr);
                            break;
                        }
                        p.parked.push(pk);
                    }
                    Err(e) => {
                        me.network.release(addr);
                        tracing::warn!("pool: cannot park an instance: {e}");
                        break;
                    }
                }
            }
            lock(&me.pool).filling = false;
        });
    }

    /// Releases every parked instance and its address.
    fn drain_pool(&self) {
        let parked = std::mem::take(&mut lock(&self.pool).parked);
        for pk in parked {
            let addr = pk.spec().network.as_ref().map(|a| a.address);
            drop(pk);
            if let Some(a) = addr {
                self.network.release(a);
            }
        }
    }

    fn emit(&self, kind: EventKind) {
        let _ = self.events.send(event(kind));
    }

    fn log_config(&self, stem: &str) -> LogConfig {
        let mut cfg = LogConfig::new(self.cfg.log_dir.join(stem));
        cfg.redact = self.cfg.redact.clone();
        cfg
    }

    /// Forwards an instance's log lines as events and keeps the last ones in `tail`.
    fn forward_logs(
        self: &Arc<Self>,
        inst: &Instance,
        tail: Arc<Mutex<VecDeque<String>>>,
        kind: impl Fn(LogLine) -> EventKind + Send + 'static,
    ) -> Option<std::thread::JoinHandle<()>> {
        let mut rx = inst.subscribe_logs()?;
        let me = self.clone();
        Some(std::thread::spawn(move || loop {
            match rx.blocking_recv() {
                Ok(line) => {
                    {
                        let mut t = lock(&tail);
                        if t.len() == TAIL_LINES {
                            t.pop_front();
                        }
                        t.push_back(line.text.clone());
                    }
                    me.emit(kind(line));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }))
    }

    fn launch(self: &Arc<Self>, def: &ServiceDef, index: u32) -> Arc<Replica> {
        self.launch_with(def, index, None, 0)
    }

    /// [`Inner::launch`], starting from an adopted instance and a restart count.
    fn launch_with(
        self: &Arc<Self>,
        def: &ServiceDef,
        index: u32,
        adopted: Option<(Instance, Ipv4Addr)>,
        restarts: u32,
    ) -> Arc<Replica> {
        let r = Arc::new(Replica {
            service: def.name.clone(),
            index,
            inner: Mutex::new(ReplicaInner {
                state: ReplicaState::Starting,
                pid: None,
                address: None,
                restarts,
                started: None,
                last_exit: None,
                last_lines: Vec::new(),
                next_start: None,
                ready: false,
                probe: None,
                control: None,
                cgroups: None,
                record: None,
            }),
            stopping: AtomicBool::new(false),
            wake: Condvar::new(),
            thread: Mutex::new(None),
            adopted: Mutex::new(adopted),
        });
        let (me, rr, d) = (self.clone(), r.clone(), def.clone());
        let t = std::thread::Builder::new()
            .name(format!("{}-{index}", def.name))
            .spawn(move || me.runner(&rr, d));
        match t {
            Ok(h) => *lock(&r.thread) = Some(h),
            Err(e) => {
                let mut i = lock(&r.inner);
                i.state = ReplicaState::CrashLoop;
                i.last_exit = Some(format!("cannot start the supervising thread: {e}"));
            }
        }
        r
    }

    /// Rewrites the record (atomically: a temporary file renamed over it, 0600).
    fn save_records(&self) {
        let Some(path) = &self.cfg.records else {
            return;
        };
        if self.shut.load(Ordering::SeqCst) {
            return;
        }
        let asked = self.records_asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = lock(&self.records_write);
        if *last >= asked {
            return;
        }
        // This snapshot covers every request made so far.
        let covers = self.records_asked.load(Ordering::SeqCst);
        let services = lock(&self.services);
        let rec = Records {
            network: self.network.record(),
            services: services
                .iter()
                .map(|s| ServiceRecord {
                    name: s.def.name.clone(),
                    digest: s.def.digest(),
                    power: s.power,
                    replicas: s
                        .replicas
                        .iter()
                        .map(|r| {
                            let i = lock(&r.inner);
                            ReplicaRecord {
                                index: r.index,
                                restarts: i.restarts,
                                address: i.address,
                                instance: i.record.clone(),
                            }
                        })
                        .collect(),
                })
                .collect(),
        };
        drop(services);
        let Ok(text) = serde_json::to_vec_pretty(&rec) else {
            return;
        };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = (|| {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::File::options()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_data()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(landscape = %self.cfg.network.name, "write the record {}: {e}", path.display());
        }
        *last = covers;
    }

    /// Replaces the replicas of `def.name` one at a time (see [`Supervisor::apply`]).
    fn rollout(self: &Arc<Self>, def: ServiceDef, ready_timeout: Duration) -> Result<String> {
        let name = def.name.clone();
        let (old_def, old) = {
            let mut all = lock(&self.services);
            let svc = all
                .iter_mut()
                .find(|s| s.def.name == name)
                .ok_or_else(|| unknown_service(&name))?;
            // Restarts of the old replicas meanwhile already use the new definition.
            let old_def = std::mem::replace(&mut svc.def, def.clone());
            (old_def, svc.replicas.clone())
        };
        self.emit(EventKind::RolloutStarted {
            service: name.clone(),
        });
        let n = def.replicas.max(old.len() as u32);
        for i in 0..n {
            let predecessor = old.get(i as usize).cloned();
            if i < def.replicas {
                let fresh = self.launch(&def, i);
                // Under the lock shutdown takes the replicas with: once it is stopping, a
                // fresh replica is stopped here instead (it would outlive the landscape).
                let kept = {
                    let mut all = lock(&self.services);
                    match all.iter_mut().find(|s| s.def.name == name) {
                        Some(svc) if !self.shut.load(Ordering::SeqCst) => {
                            svc.replicas.push(fresh.clone());
                            true
                        }
                        _ => false,
                    }
                };
                if !kept {
                    self.stop_replicas(std::slice::from_ref(&fresh));
                    return Err(Error::Start {
                        instance: format!("{name}-{i}"),
                        message: format!(
                            "service {name:?}: the landscape is stopping (or the service is gone); the replacement stopped"
                        ),
                    });
                }
                if let Err(why) = self.wait_ready(&fresh, ready_timeout) {
                    // Abandon: the new replica goes, the old ones (and definition) stay.
                    {
                        let mut all = lock(&self.services);
                        if let Some(svc) = all.iter_mut().find(|s| s.def.name == name) {
                            svc.replicas.retain(|r| !Arc::ptr_eq(r, &fresh));
                            svc.def = old_def.clone();
                        }
                    }
                    self.stop_replicas(std::slice::from_ref(&fresh));
                    let error = format!(
                        "service {name:?}: the new replica {i} did not become ready ({why}); the old replicas keep serving"
                    );
                    self.emit(EventKind::RolloutFinished {
                        service: name.clone(),
                        error: Some(error.clone()),
                    });
                    return Err(Error::Start {
                        instance: format!("{name}-{i}"),
                        message: error,
                    });
                }
            }
            if let Some(p) = predecessor {
                {
                    let mut all = lock(&self.services);
                    if let Some(svc) = all.iter_mut().find(|s| s.def.name == name) {
                        svc.replicas.retain(|r| !Arc::ptr_eq(r, &p));
                    }
                }
                // Out of rotation first, then a drain, then the stop.
                p.stopping.store(true, Ordering::SeqCst);
                lock(&p.inner).ready = false;
                self.publish();
                std::thread::sleep(self.cfg.drain);
                self.stop_replicas(std::slice::from_ref(&p));
            }
        }
        self.emit(EventKind::RolloutFinished {
            service: name.clone(),
            error: None,
        });
        Ok(name)
    }

    /// Waits until `r` is ready; the reason when it is not within `timeout` (or it
    /// crash-loops first).
    fn wait_ready(&self, r: &Replica, timeout: Duration) -> std::result::Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&r.inner);
        loop {
            if g.ready {
                return Ok(());
            }
            if g.state == ReplicaState::CrashLoop {
                return Err(format!(
                    "crash loop: {}",
                    g.last_exit.clone().unwrap_or_default()
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let mut why = format!("not ready after {} s", timeout.as_secs_f64());
                if let Some(e) = &g.last_exit {
                    why.push_str(&format!("; last exit: {e}"));
                }
                if let Some(l) = g.last_lines.last() {
                    why.push_str(&format!("; last output: {l}"));
                }
                return Err(why);
            }
            g = r
                .wake
                .wait_timeout(g, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// The current definition of `service` (scale and limits may change it).
    fn def(&self, service: &str) -> Option<ServiceDef> {
        lock(&self.services)
            .iter()
            .find(|s| s.def.name == service)
            .map(|s| s.def.clone())
    }

    fn runner(self: &Arc<Self>, r: &Arc<Replica>, mut def: ServiceDef) {
        let mut failures = 0u32;
        while !r.stopping.load(Ordering::SeqCst) {
            // Limits may have changed since the last start.
            if let Some(d) = self.def(&r.service) {
                def = d;
            }
            let (exit, ran) = self.run_once(r, &def);
            if r.stopping.load(Ordering::SeqCst) {
                break;
            }
            if ran >= self.cfg.backoff.reset_after {
                failures = 0;
            }
            failures += 1;
            let delay = self.cfg.backoff.delay(failures);
            let crash_loop = failures >= self.cfg.backoff.crash_loop_after;
            let restarts = {
                let mut i = lock(&r.inner);
                i.restarts += 1;
                i.state = if crash_loop {
                    ReplicaState::CrashLoop
                } else {
                    ReplicaState::Restarting
                };
                i.last_exit = Some(describe_exit(&exit));
                i.next_start = Some(Instant::now() + delay);
                i.restarts
            };
            r.wake.notify_all();
            self.emit(EventKind::ReplicaExited {
                service: r.service.clone(),
                replica: r.index,
                exit,
            });
            self.emit(EventKind::ReplicaRestarting {
                service: r.service.clone(),
                replica: r.index,
                in_ms: delay.as_millis() as u64,
                restarts,
                crash_loop,
            });
            let deadline = Instant::now() + delay;
            let mut g = lock(&r.inner);
            while !r.stopping.load(Ordering::SeqCst) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                g = r
                    .wake
                    .wait_timeout(g, left)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            g.next_start = None;
        }
        let mut i = lock(&r.inner);
        i.state = ReplicaState::Stopped;
        i.pid = None;
        i.started = None;
        i.probe = None;
        drop(i);
        self.emit(EventKind::ReplicaStopped {
            service: r.service.clone(),
            replica: r.index,
        });
    }

    /// Starts the replica's instance once and waits for its end; returns the exit and how
    /// long it ran.
    fn run_once(self: &Arc<Self>, r: &Arc<Replica>, def: &ServiceDef) -> (Exit, Duration) {
        let adopted = lock(&r.adopted).take();
        let mut spec = def.spec.clone();
        spec.name = def.name.clone();
        spec.hostname = Some(format!("{}-{}", def.name, r.index));
        spec.durable = self.cfg.records.is_some();
        // A pre-warmed instance when one fits: its address becomes the replica's.
        let parked = match adopted {
            None => self.take_parked(&spec),
            Some(_) => None,
        };
        let addr = match (&adopted, &parked) {
            (Some((_, a)), _) => *a,
            (None, Some(pk)) => match pk.spec().network.as_ref() {
                Some(att) => att.address,
                None => {
                    return (
                        Exit::failed("parked without a network".into()),
                        Duration::ZERO,
                    )
                }
            },
            (None, None) => match self.network.allocate() {
                Ok(a) => a,
                Err(e) => return (Exit::failed(e.to_string()), Duration::ZERO),
            },
        };
        spec.network = match &parked {
            Some(pk) => pk.spec().network.clone(),
            None => Some(self.network.attachment(addr)),
        };
        // An adopted replica of a frozen service stays frozen (its probes pause).
        let stays_frozen = adopted.is_some()
            && lock(&self.services)
                .iter()
                .any(|s| s.def.name == r.service && s.power == Power::Frozen);
        {
            let mut i = lock(&r.inner);
            if stays_frozen {
                i.state = ReplicaState::Frozen;
            } else if i.state != ReplicaState::CrashLoop {
                i.state = ReplicaState::Starting;
            }
            i.address = Some(addr);
        }
        self.emit(EventKind::ReplicaStarting {
            service: r.service.clone(),
            replica: r.index,
            address: addr,
        });
        let logs = self.log_config(&format!("{}-{}", def.name, r.index));
        // An adopted replica has run since its process started (for `ps` and backoff).
        let started = adopted
            .as_ref()
            .and_then(|(inst, _)| crate::instance::process_age(inst.pid()))
            .and_then(|age| Instant::now().checked_sub(age))
            .unwrap_or_else(Instant::now);
        let spawned = match (adopted, parked) {
            (Some((inst, _)), _) => Ok(inst),
            (None, Some(pk)) => pk.assign(&spec, logs),
            (None, None) => self.runtime.spawn(&spec, Output::Logs(logs)),
        };
        let mut inst = match spawned {
            Ok(i) => i,
            Err(e) => {
                self.network.release(addr);
                lock(&r.inner).address = None;
                return (Exit::failed(e.to_string()), Duration::ZERO);
            }
        };
        {
            let mut i = lock(&r.inner);
            i.pid = Some(inst.pid());
            i.started = Some(started);
            i.control = inst.control().ok();
            i.cgroups = inst.cgroups().cloned();
            i.record = inst.record();
        }
        self.save_records();
        // A stop that came while starting.
        if r.stopping.load(Ordering::SeqCst) {
            let _ = inst.kill();
        }
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let fwd = self.forward_logs(&inst, tail.clone(), {
            let (service, replica) = (r.service.clone(), r.index);
            move |line| EventKind::Log {
                service: service.clone(),
                replica,
                line,
            }
        });
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let prober = {
            let (me, rr, done) = (self.clone(), r.clone(), done.clone());
            let probe = def.probe.clone();
            std::thread::spawn(move || me.probe_loop(&rr, addr, probe, &done))
        };
        let exit = inst.wait().unwrap_or_else(|e| Exit::failed(e.to_string()));
        let ran = started.elapsed();
        {
            let (m, cv) = &*done;
            *lock(m) = true;
            cv.notify_all();
        }
        let _ = prober.join();
        self.set_ready(r, false);
        drop(inst);
        if let Some(t) = fwd {
            let _ = t.join();
        }
        self.network.release(addr);
        let mut i = lock(&r.inner);
        i.pid = None;
        i.address = None;
        i.started = None;
        i.probe = None;
        i.control = None;
        i.cgroups = None;
        i.record = None;
        i.last_lines = lock(&tail).iter().cloned().collect();
        drop(i);
        self.save_records();
        (exit, ran)
    }

    fn probe_loop(
        &self,
        r: &Arc<Replica>,
        addr: Ipv4Addr,
        probe: Option<Probe>,
        done: &(Mutex<bool>, Condvar),
    ) {
        let pc = self.cfg.probes;
        let sleep = |d: Duration| -> bool {
            let (m, cv) = done;
            let deadline = Instant::now() + d;
            let mut g = lock(m);
            while !*g {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                g = cv
                    .wait_timeout(g, left)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            true
        };
        let Some(probe) = probe else {
            self.set_ready(r, true);
            return;
        };
        let started = Instant::now();
        let frozen = || lock(&r.inner).state == ReplicaState::Frozen;
        // Startup: until the first success; the first probes come quickly (1 ms, doubling
        // up to the startup period), so a replica that is up in milliseconds (a wake from
        // asleep, a scale-up) joins the rotation in milliseconds. (From 5 ms, a server
        // listening 2 ms after its start joined at 5 ms: `benches/wake.sh`'s wake from
        // stopped took 10.5 ms, with or without the pool.)
        let mut wait = Duration::from_millis(1).min(pc.startup_period);
        loop {
            if *lock(&done.0) {
                return;
            }
            if frozen() {
                if sleep(pc.startup_period) {
                    return;
                }
                continue;
            }
            match self.check(&probe, addr, pc.timeout) {
                Ok(()) => {
                    self.set_ready(r, true);
                    break;
                }
                Err(why) => lock(&r.inner).probe = Some(why),
            }
            if started.elapsed() >= pc.startup_timeout {
                self.emit(EventKind::ReplicaUnhealthy {
                    service: r.service.clone(),
                    replica: r.index,
                    reason: format!(
                        "not ready after {} s; restarting",
                        pc.startup_timeout.as_secs()
                    ),
                });
                self.kill(r);
                return;
            }
            if sleep(wait) {
                return;
            }
            wait = (wait * 2).min(pc.startup_period);
        }
        // Liveness and readiness.
        let mut failed = 0;
        loop {
            if sleep(pc.period) {
                return;
            }
            if frozen() {
                failed = 0;
                continue;
            }
            match self.check(&probe, addr, pc.timeout) {
                Ok(()) => {
                    failed = 0;
                    self.set_ready(r, true);
                }
                Err(why) => {
                    failed += 1;
                    lock(&r.inner).probe = Some(why.clone());
                    self.set_ready(r, false);
                    let restart = failed >= pc.failure_threshold;
                    self.emit(EventKind::ReplicaUnhealthy {
                        service: r.service.clone(),
                        replica: r.index,
                        reason: if restart {
                            format!("{why} ({failed} times in a row); restarting")
                        } else {
                            why
                        },
                    });
                    if restart {
                        self.kill(r);
                        return;
                    }
                }
            }
        }
    }

    fn kill(&self, r: &Replica) {
        if let Some(c) = &lock(&r.inner).control {
            let _ = c.kill();
        }
    }

    /// One probe against the replica at `addr`.
    fn check(
        &self,
        probe: &Probe,
        addr: Ipv4Addr,
        timeout: Duration,
    ) -> std::result::Result<(), String> {
        let port = match probe {
            Probe::Http { port, .. } | Probe::Tcp { port } | Probe::Exchange { port, .. } => *port,
        };
        let mut s = self
            .network
            .connect(SocketAddrV4::new(addr, port), timeout)
            .map_err(|e| format!("connect to port {port}: {e}"))?;
        if let Probe::Exchange { send, expect, .. } = probe {
            let _ = s.set_read_timeout(Some(timeout));
            let _ = s.set_write_timeout(Some(timeout));
            return exchange(&mut s, port, send, expect, timeout);
        }
        let Probe::Http { path, .. } = probe else {
            return Ok(());
        };
        let _ = s.set_read_timeout(Some(timeout));
        let _ = s.set_write_timeout(Some(timeout));
        s.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: localhost:{port}\r\nUser-Agent: landscape-probe\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| format!("send GET {path}: {e}"))?;
        // The whole (HTTP/1.0, so closed by the server) response, bounded: closing with
        // unread data would reset the connection and make servers log errors.
        let mut head = [0u8; 64];
        let mut n = 0;
        let mut rest = [0u8; 4096];
        let mut total = 0usize;
        loop {
            let buf: &mut [u8] = if n < head.len() {
                &mut head[n..]
            } else {
                &mut rest
            };
            match s.read(buf) {
                Ok(0) => break,
                Ok(k) => {
                    if n < head.len() {
                        n += k;
                    }
                    total += k;
                    if total > 1 << 20 {
                        break;
                    }
                }
                Err(e) if n >= 12 => {
                    tracing::debug!("probe GET {path}: {e} after the status line");
                    break;
                }
                Err(e) => return Err(format!("GET {path}: {e}")),
            }
        }
        let line = String::from_utf8_lossy(&head[..n]);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("GET {path}: not an HTTP response"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("GET {path} answered {code}"))
        }
    }

    /// Puts a replica in or out of rotation: the service's ready list and the DNS names.
    fn set_ready(&self, r: &Replica, ready: bool) {
        {
            let mut i = lock(&r.inner);
            // Ready: the last failed probe is history ([`ReplicaStatus::probe`]).
            if ready {
                i.probe = None;
            }
            if i.ready == ready && !(ready && i.state != ReplicaState::Ready) {
                return;
            }
            i.ready = ready;
            if ready {
                i.state = ReplicaState::Ready;
            } else if i.pid.is_some() && i.state == ReplicaState::Ready {
                i.state = ReplicaState::Unhealthy;
            }
        }
        r.wake.notify_all();
        self.publish();
        if ready {
            self.emit(EventKind::ReplicaReady {
                service: r.service.clone(),
                replica: r.index,
            });
        }
    }

    /// Recomputes every service's ready addresses and the DNS table.
    fn publish(&self) {
        let services = lock(&self.services);
        let mut names: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for s in services.iter() {
            let mut ready = Vec::new();
            for r in &s.replicas {
                let i = lock(&r.inner);
                if let Some(a) = i.address {
                    names.insert(format!("{}-{}", s.def.name, r.index), vec![a]);
                    if i.ready {
                        ready.push(a);
                    }
                }
            }
            names.insert(s.def.name.clone(), ready.clone());
            s.ready_tx.send_if_modified(|cur| {
                if *cur != ready {
                    *cur = ready;
                    true
                } else {
                    false
                }
            });
        }
        drop(services);
        if let Err(e) = self.network.set_names(&names) {
            tracing::warn!(landscape = %self.cfg.network.name, "update DNS names: {e}");
        }
    }

    /// Stops replicas in parallel: out of rotation first, then SIGTERM (SIGKILL after the
    /// grace period); waits for their runners.
    fn stop_replicas(&self, replicas: &[Arc<Replica>]) {
        for r in replicas {
            r.stopping.store(true, Ordering::SeqCst);
            lock(&r.inner).ready = false;
        }
        self.publish();
        for r in replicas {
            let i = lock(&r.inner);
            if let Some(c) = &i.control {
                let _ = c.stop(self.cfg.stop_grace);
            }
            r.wake.notify_all();
        }
        for r in replicas {
            if let Some(t) = lock(&r.thread).take() {
                let _ = t.join();
            }
        }
        self.publish();
    }
}

/// One [`Probe::Exchange`] on a connected stream: writes `send`, reads until the reply
/// starts with one of `expect` (healthy), can no longer match any (the reply is named),
/// or ends.
pub(crate) fn exchange(
    s: &mut (impl Read + Write),
    port: u16,
    send: &[u8],
    expect: &[Vec<u8>],
    timeout: Duration,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + timeout;
    s.write_all(send)
        .map_err(|e| format!("send the probe to port {port}: {e}"))?;
    let want = expect.iter().map(Vec::len).max().unwrap_or(0).clamp(1, 256);
    let mut reply = Vec::with_capacity(want);
    let mut buf = [0u8; 256];
    loop {
        if expect.iter().any(|e| reply.starts_with(e)) || (expect.is_empty() && !reply.is_empty()) {
            return Ok(());
        }
        let open = expect.is_empty() || expect.iter().any(|e| e.starts_with(&reply));
        if !open || reply.len() >= want {
            let shown: String = String::from_utf8_lossy(&reply[..reply.len().min(40)])
                .chars()
                .map(|c| if c.is_control() { '.' } else { c })
                .collect();
            return Err(format!(
                "port {port} answered the probe with {shown:?}, not the expected reply"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("port {port}: no reply to the probe in time"));
        }
        // Whole reads: what the server sent is consumed, so that closing does not reset
        // the connection (which servers log).
        match s.read(&mut buf) {
            Ok(0) => {
                return Err(format!(
                    "port {port} closed the connection without replying to the probe"
                ))
            }
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("port {port}: reading the probe reply: {e}")),
        }
    }
}

fn describe_exit(exit: &Exit) -> String {
    let mut s = match (exit.code, exit.signal) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(c), None) => format!("exit code {c}"),
        (None, None) => "ended".to_string(),
    };
    if exit.oom_killed {
        s.push_str(" (out of memory)");
    }
    if let Some(e) = &exit.error {
        s.push_str(": ");
        s.push_str(e);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(20), Duration::from_secs(30));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn states_serialise_as_the_cli_shows_them() {
        assert_eq!(
            serde_json::to_string(&ReplicaState::CrashLoop).unwrap(),
            "\"crash-loop\""
        );
        let e = event(EventKind::ReplicaReady {
            service: "api".into(),
            replica: 1,
        });
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["event"], "replica_ready");
        assert_eq!(j["service"], "api");
    }
}
