//! The composition layer: one [`Landscape`] type that runs a parsed `ci.yml` with the
//! runtime's network and supervisor behind landscape-net's router. This is the only
//! library code where landscape-runtime and landscape-net meet: the adapters
//! ([`SupervisorEndpoints`] for [`net::EndpointSource`], [`NetworkConnector`] for
//! [`net::Connector`]) live here, so neither crate imports the other.
//!
//! ```no_run
//! # async fn demo(model: landscape::spec::Landscape) -> Result<(), Box<dyn std::error::Error>> {
//! use landscape::compose::{Landscape, UpOptions};
//! let runtime = std::sync::Arc::new(landscape::runtime::Runtime::with_defaults()?);
//! let opts = UpOptions::new("shop", "/srv/shop".into(), "/run/shop".into());
//! let land = Landscape::up(runtime, &model, Default::default(), opts).await?;
//! println!("serving on http://{}", land.local_addr());
//! land.wait_ready(std::time::Duration::from_secs(60)).await?;
//! land.down().await;
//! # Ok(()) }
//! ```

use crate::net::{self, Endpoint, Endpoints};
use crate::runtime::{
    self as rt, Backoff, ProbeConfig, Runtime, ServiceDef, StageFailure, StepDef, Supervisor,
    SupervisorConfig,
};
use crate::spec::{self, ServiceKind};
use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why [`Landscape::up`] did not bring a landscape up. Nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The file cannot be run as it is (names the service and what to do).
    #[error("{0}")]
    Invalid(String),
    /// The router's listener could not be bound.
    #[error("cannot listen on {addr}: {source}; choose another address with --listen")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A service's image cannot be pulled or unpacked.
    #[error("service {service:?}: image {image:?} cannot be used: {source}")]
    Image {
        /// The service.
        service: String,
        /// The reference as the spec writes it.
        image: String,
        /// Why.
        source: rt::Error,
    },
    /// A Managed Service could not be provisioned or started.
    #[error("service {service:?}: {source}")]
    Managed {
        /// The service.
        service: String,
        /// Why.
        source: rt::managed::Error,
    },
    /// A `prepare` or `test` step failed.
    #[error(transparent)]
    Stage(#[from] StageFailure),
    /// The runtime failed (network, instances).
    #[error(transparent)]
    Runtime(#[from] rt::Error),
    /// [`UpOptions::stop`] asked to stop before the landscape was up; what had started
    /// (a running `prepare` step included) has been stopped.
    #[error("stopped before it was up")]
    Stopped,
}

/// How to run a landscape.
#[derive(Clone)]
pub struct UpOptions {
    /// Landscape name (a DNS label: the search domain inside, the network's name).
    pub name: String,
    /// The app directory (`/home/user/app` in every instance).
    pub app_dir: PathBuf,
    /// State directory outside the app directory (logs).
    pub state_dir: PathBuf,
    /// The router's public listener.
    pub listen: SocketAddr,
    /// Run the `test` stage (default true).
    pub run_tests: bool,
    /// Probe timing.
    pub probes: ProbeConfig,
    /// Restart backoff.
    pub backoff: Backoff,
    /// Grace period of stops.
    pub stop_grace: Duration,
    /// The host's plan catalogue (plans become cgroup limits).
    pub plans: Option<spec::PlanCatalogue>,
    /// Applied to every log line (e.g. a vault redactor over the resolved secrets).
    pub redact: Option<rt::supervisor::Redact>,
    /// Instances reach the outside (package installs in `prepare`) through slirp4netns
    /// (default true; see `landscape_runtime::NetworkConfig::egress`).
    pub egress: bool,
    /// Off-when-unused for the services the router serves (default: off).
    pub idle: IdleConfig,
    /// Replicas outlive a killed host process and a record in `state_dir` lets
    /// [`Landscape::adopt`] take them over (default true).
    pub durable: bool,
    /// Where images of Managed Containers are unpacked, shared by landscapes (default
    /// [`rt::image::default_cache_dir`]).
    pub image_cache: PathBuf,
    /// How images are pulled (CA files, credentials, insecure registries).
    pub registry: rt::image::RegistryOptions,
    /// Pre-warmed instances kept ready for scale-ups, restarts and wakes from stopped
    /// (`landscape_runtime::SupervisorConfig::pool`; default 0).
    pub pool: usize,
    /// The providers of Managed Services (`provider: {name, schemaVersion}`; default: the
    /// built-in `postgres/v1` and `redis/v1`). A host registers its own here.
    pub providers: Arc<rt::managed::Providers>,
    /// Where Managed Services keep their data, one directory per service (outside the app
    /// directory; survives [`Landscape::shutdown`]; [`deprovision`] removes it).
    /// Default: `$XDG_DATA_HOME/landscape/data/NAME` (`~/.local/share/...`), or
    /// `/var/lib/landscape/data/NAME` as root.
    pub data_dir: PathBuf,
    /// How long `up` waits for the Managed Services to be ready before `prepare` runs
    /// (default 120 s).
    pub managed_ready_timeout: Duration,
    /// Set to `true` to give up while `up` is still starting (a Ctrl-C): pulls are
    /// dropped, a running `prepare`/`test` step and whatever has started are stopped, and
    /// `up` returns [`UpError::Stopped`]. Default: none.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Resolves once `stop` is `true` (never without one).
async fn stop_asked(stop: Option<tokio::sync::watch::Receiver<bool>>) {
    match stop {
        Some(mut rx) => {
            if rx.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// The default data directory of landscape `name` (see [`UpOptions::data_dir`]).
pub fn default_data_dir(name: &str) -> PathBuf {
    let root = nix_euid_is_root();
    let base = if root {
        PathBuf::from("/var/lib/landscape")
    } else {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(std::env::temp_dir)
            .join("landscape")
    };
    base.join("data").join(name)
}

fn nix_euid_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The record's file name in the state directory.
const RECORDS: &str = "records.json";

/// When an unused service is frozen and then stopped. "Unused": no request through the
/// router, none in flight, no open WebSocket, none held. The next request wakes it (the
/// router holds it until a replica is ready again), so the first request after a wake
/// does not fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Freeze after this long unused (memory kept; wake in about a millisecond).
    pub freeze_after: Option<Duration>,
    /// Stop after this long unused (memory released; wake = a start).
    pub stop_after: Option<Duration>,
}

/// Off-when-unused settings of a landscape: a default for every routed service and
/// per-service overrides (not ci.yml keys: ci.yml stays valid for Codesphere). Services
/// without a public route are never frozen: other services reach them by name, past the
/// router, so nothing would wake them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdleConfig {
    /// The policy of every routed service.
    pub default: IdlePolicy,
    /// Per-service policies (replacing the default).
    pub services: BTreeMap<String, IdlePolicy>,
}

impl IdleConfig {
    fn policy(&self, service: &str) -> IdlePolicy {
        self.services.get(service).copied().unwrap_or(self.default)
    }

    fn any(&self) -> bool {
        let on = |p: &IdlePolicy| p.freeze_after.is_some() || p.stop_after.is_some();
        on(&self.default) || self.services.values().any(on)
    }
}

impl UpOptions {
    /// Defaults: router on 127.0.0.1:3000, tests run, probes every 200 ms until ready
    /// (then the kubelet's 10 s), 10 s stop grace.
    pub fn new(name: impl Into<String>, app_dir: PathBuf, state_dir: PathBuf) -> Self {
        let name = name.into();
        UpOptions {
            name: name.clone(),
            app_dir,
            state_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            run_tests: true,
            probes: ProbeConfig {
                startup_period: Duration::from_millis(200),
                ..ProbeConfig::default()
            },
            backoff: Backoff::default(),
            stop_grace: Duration::from_secs(10),
            plans: None,
            redact: None,
            egress: true,
            idle: IdleConfig::default(),
            durable: true,
            image_cache: rt::image::default_cache_dir(),
            registry: rt::image::RegistryOptions::default(),
            pool: 0,
            providers: Arc::new(rt::managed::Providers::builtin()),
            data_dir: default_data_dir(&name),
            managed_ready_timeout: Duration::from_secs(120),
            stop: None,
        }
    }
}

/// A running landscape: its supervisor and its router.
pub struct Landscape {
    sup: Arc<Supervisor>,
    router: net::Router,
    addr: SocketAddr,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    server: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    routes: std::sync::Mutex<Vec<(String, String)>>,
    opts: UpOptions,
    came_up: std::sync::atomic::AtomicBool,
    /// The scheduled backups of Managed Services (aborted by shutdown).
    backups: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The `prepare` and `test` steps of the definition the landscape came up with (they
    /// run at `up` only; [`Applied::stages_not_rerun`]).
    stages: [Vec<StepDef>; 2],
    /// The Managed Services (one instance on their data: restarted in place, never two
    /// at once).
    managed: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// What [`Landscape::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// What changed by service (the same keys as [`rt::Applied`]).
    #[serde(flatten)]
    pub services: rt::Applied,
    /// The router's routes changed (and the new ones are served).
    #[serde(default)]
    pub routes_changed: bool,
    /// `prepare` or `test` whose steps differ from those the landscape came up with: they
    /// run at `up` only, so they were not run again (`down`, then `up`, runs them).
    #[serde(default)]
    pub stages_not_rerun: Vec<String>,
}

impl std::fmt::Debug for Landscape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Landscape")
            .field("name", &self.sup.config().network.name)
            .field("listen", &self.addr)
            .finish()
    }
}

/// A service that runs on an image: its definition is finished by [`use_images`].
struct ImageUse {
    /// Index in the definitions.
    index: usize,
    /// The reference as written.
    reference: String,
    /// The image's user applies (no `runAsUser`).
    image_user: bool,
}

/// How long [`Landscape::restart`] waits for each new replica.
const RESTART_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a replica without a probe must have run before [`Landscape::wait_ready`]
/// counts it as up.
const UNPROBED_SETTLE: Duration = Duration::from_secs(1);

/// The services without a probe (workers: no port, no `healthEndpoint`), which are ready
/// as soon as they run.
fn unprobed(sup: &Supervisor) -> std::collections::BTreeSet<String> {
    sup.services()
        .into_iter()
        .filter(|d| d.probe.is_none())
        .map(|d| d.name)
        .collect()
}

/// How much longer replica `r` (of a service without a probe) must run before it counts
/// as up: [`UNPROBED_SETTLE`] less its uptime once it is ready, all of it before.
fn settle_left(r: &rt::supervisor::ReplicaStatus) -> Duration {
    match (r.state, r.uptime_s) {
        (rt::ReplicaState::Ready, Some(up)) => {
            UNPROBED_SETTLE.saturating_sub(Duration::from_secs_f64(up.max(0.0)))
        }
        _ => UNPROBED_SETTLE,
    }
}

/// Why `up` gives up on a crash-looping replica: its last exit and output.
fn crash_loop_message(r: &rt::supervisor::ReplicaStatus) -> String {
    let mut msg = format!(
        "service {:?}: replica {} keeps crashing (crash loop{}, {} restarts)",
        r.service,
        r.replica,
        r.last_exit
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default(),
        r.restarts
    );
    if !r.last_lines.is_empty() {
        msg.push_str("; its last lines:");
        for l in r.last_lines.iter().rev().take(10).rev() {
            msg.push_str("\n    ");
            msg.push_str(l);
        }
    }
    msg
}

/// A replica state as `ps` and the control API spell it (`crash-loop`).
fn state_name(state: rt::ReplicaState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{state:?}"))
}

/// Refuses a landscape with more replicas (with the pool) than its network has addresses
/// for, naming the largest service: they would crash-loop on "all addresses in use".
fn check_capacity(model: &spec::Landscape, opts: &UpOptions) -> Result<(), UpError> {
    let net = rt::network::NetworkConfig::new(opts.name.clone());
    let cap = u64::from(net.capacity());
    let mut total = opts.pool as u64;
    let mut largest: Option<(u64, &str, spec::Pos)> = None;
    for svc in model.services() {
        if matches!(svc.kind(), ServiceKind::HeadlessRoute) {
            continue;
        }
        let n = svc
            .replicas
            .as_ref()
            .map_or(1, |r| u64::from(r.value.max(1)));
        total += n;
        let at = svc
            .replicas
            .as_ref()
            .map_or(svc.name.span.start, |r| r.span.start);
        if largest.is_none_or(|(m, _, _)| n > m) {
            largest = Some((n, &svc.name.value, at));
        }
    }
    match largest {
        Some((n, name, at)) if total > cap => Err(UpError::Invalid(format!(
            "the landscape runs {total} replicas in all{}, but its network ({}/{}) has addresses for {cap}; the largest is service {name:?} with {n} (line {}:{}): lower `replicas`",
            if opts.pool > 0 {
                format!(" (with {} kept for the pool)", opts.pool)
            } else {
                String::new()
            },
            net.subnet,
            net.prefix,
            at.line,
            at.col
        ))),
        _ => Ok(()),
    }
}

/// Checks that `model` can be run here; returns the services to supervise and the images
/// they need (resolved by [`pull_images`], applied by [`use_images`]).
fn plan_services(
    model: &spec::Landscape,
    env: &BTreeMap<String, Vec<(String, String)>>,
    opts: &UpOptions,
) -> Result<(Vec<ServiceDef>, Vec<ImageUse>), UpError> {
    let mut images = Vec::new();
    let up = spec::upgrade(model);
    let mut defs = Vec::new();
    // Every name the landscape's DNS will answer (DNS is case-insensitive): the service,
    // and `service-N` per replica; two services must not claim one.
    let mut claimed: BTreeMap<String, (String, spec::Pos)> = BTreeMap::new();
    check_capacity(&up.landscape, opts)?;
    for svc in up.landscape.services() {
        let name = &svc.name.value;
        let at = svc.name.span.start;
        let label_ok = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !label_ok {
            return Err(UpError::Invalid(format!(
                "service {name:?} (line {}:{}): the name must be a DNS label (letters, digits and '-', at most 63) so that other services reach it as http://{name}:PORT; rename it",
                at.line, at.col
            )));
        }
        let replicas = svc.replicas.as_ref().map_or(1, |r| r.value.max(1));
        let mut names = vec![name.to_ascii_lowercase()];
        names.extend((0..replicas).map(|i| format!("{}-{i}", name.to_ascii_lowercase())));
        for n in names {
            if let Some((other, pos)) = claimed.get(&n) {
                if other != name {
                    return Err(UpError::Invalid(format!(
                        "services {other:?} (line {}:{}) and {name:?} (line {}:{}) both claim the name {n:?} inside the landscape (a service name, or SERVICE-N of a replica); rename one",
                        pos.line, pos.col, at.line, at.col
                    )));
                }
            }
            claimed.insert(n, (name.clone(), at));
        }
        match svc.kind() {
            ServiceKind::HeadlessRoute => continue,
            ServiceKind::ManagedService => {
                let errors: Vec<String> = opts
                    .providers
                    .validate(svc)
                    .into_iter()
                    .filter(|d| d.is_error())
                    .map(|d| {
                        format!(
                            "service {name:?} (line {}:{}): {}{}",
                            d.span.start.line,
                            d.span.start.col,
                            d.message,
                            d.help.map(|h| format!("; {h}")).unwrap_or_default()
                        )
                    })
                    .collect();
                if !errors.is_empty() {
                    return Err(UpError::Invalid(errors.join("\n")));
                }
                continue;
            }
            _ => {}
        }
        let vars = env.get(name).cloned().unwrap_or_default();
        let def = ServiceDef::from_service(svc, &opts.app_dir, vars, opts.plans.as_ref())
            .map_err(|e| UpError::Invalid(e.to_string()))?;
        match svc.image_ref() {
            Some(image) => {
                rt::image::ImageRef::parse(&image.value).map_err(|e| {
                    UpError::Invalid(format!(
                        "service {name:?} (line {}:{}): image {:?}: {e}",
                        image.span.start.line, image.span.start.col, image.value
                    ))
                })?;
                images.push(ImageUse {
                    index: defs.len(),
                    reference: image.value.clone(),
                    image_user: svc.run_as_user.is_none(),
                });
            }
            None if def.spec.process.args.is_empty() => {
                return Err(UpError::Invalid(format!(
                    "service {name:?} (line {}:{}) has no steps and no command: give it `steps` to run",
                    svc.name.span.start.line, svc.name.span.start.col
                )));
            }
            None => {}
        }
        defs.push(def);
    }
    Ok((defs, images))
}

/// Resolves every image the services use (each reference once): pulled into, or found in,
/// `opts.image_cache`; `progress` gets an [`rt::EventKind::ImageProgress`] per step.
/// Blocking (network and disk): call it off the async threads.
fn pull_images(
    runtime: &Runtime,
    opts: &UpOptions,
    defs: &[ServiceDef],
    uses: &[ImageUse],
    progress: &(dyn Fn(rt::EventKind) + Send + Sync),
) -> Result<BTreeMap<String, rt::image::Image>, UpError> {
    let store = rt::image::ImageStore::new(&opts.image_cache, runtime.idmap())
        .with_registry(opts.registry.clone());
    let mut images = BTreeMap::new();
    for u in uses {
        if images.contains_key(&u.reference) {
            continue;
        }
        let service = defs[u.index].name.clone();
        let fail = |source: rt::Error| UpError::Image {
            service: service.clone(),
            image: u.reference.clone(),
            source,
        };
        let r = rt::image::ImageRef::parse(&u.reference).map_err(fail)?;
        let img = store
            .resolve(&r, &mut |p| {
                progress(rt::EventKind::ImageProgress {
                    service: service.clone(),
                    image: u.reference.clone(),
                    message: p.to_string(),
                })
            })
            .map_err(fail)?;
        images.insert(u.reference.clone(), img);
    }
    Ok(images)
}

/// Puts the resolved images under their services' definitions.
fn use_images(
    defs: &mut [ServiceDef],
    uses: &[ImageUse],
    images: &BTreeMap<String, rt::image::Image>,
) -> Result<(), UpError> {
    for u in uses {
        let Some(img) = images.get(&u.reference) else {
            continue;
        };
        let def = &mut defs[u.index];
        def.spec.use_image(img, u.image_user);
        if def.spec.process.args.is_empty() {
            return Err(UpError::Invalid(format!(
                "service {:?}: image {:?} has no entrypoint and no cmd, and the service has no steps and no command: give it `steps` to run",
                def.name, u.reference
            )));
        }
    }
    Ok(())
}

/// A Managed Service of a running landscape.
struct ManagedRun {
    provider: Arc<dyn rt::managed::Provider>,
    ctx: rt::managed::ManagedContext,
    resource: rt::managed::ResourceId,
}

/// The context of Managed Service `svc`: its data directory under `opts.data_dir`, its
/// jobs' logs beside the replicas', its `secrets` as the host rendered them (`env` holds
/// them under the service's name).
fn managed_context(
    runtime: &Arc<Runtime>,
    svc: &spec::Service,
    env: &BTreeMap<String, Vec<(String, String)>>,
    opts: &UpOptions,
) -> rt::managed::ManagedContext {
    let name = &svc.name.value;
    let secrets = env
        .get(name)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), rt::managed::Secret::new(v.clone())))
        .collect();
    let mut ctx = rt::managed::ManagedContext::from_service(
        svc,
        runtime.clone(),
        opts.data_dir.join(name),
        opts.state_dir.join("logs").join(format!("{name}-jobs")),
        secrets,
    );
    ctx.redact = opts.redact.clone();
    ctx
}

/// A Managed Service's provider and the context of its calls.
type ManagedService = (Arc<dyn rt::managed::Provider>, rt::managed::ManagedContext);

/// Every Managed Service of `model` with its provider and context (see
/// [`managed_context`]); an unknown provider is an error naming the service.
fn managed_services(
    runtime: &Arc<Runtime>,
    model: &spec::Landscape,
    env: &BTreeMap<String, Vec<(String, String)>>,
    opts: &UpOptions,
) -> Result<Vec<ManagedService>, UpError> {
    let up = spec::upgrade(model);
    up.landscape
        .services()
        .filter(|s| s.kind() == ServiceKind::ManagedService)
        .map(|svc| {
            let provider = opts
                .providers
                .for_service(svc)
                .map_err(managed_error(&svc.name.value))?;
            Ok((provider, managed_context(runtime, svc, env, opts)))
        })
        .collect()
}

/// [`UpError::Managed`] for `service`.
fn managed_error(service: &str) -> impl Fn(rt::managed::Error) -> UpError + '_ {
    move |source| UpError::Managed {
        service: service.to_string(),
        source,
    }
}

/// Provisions every Managed Service of `model` (idempotent: a provisioned one is found
/// again by its resource id in its data directory) and returns the definitions of the
/// servers to supervise.
async fn provision_managed(
    runtime: &Arc<Runtime>,
    model: &spec::Landscape,
    env: &BTreeMap<String, Vec<(String, String)>>,
    opts: &UpOptions,
) -> Result<(Vec<ServiceDef>, Vec<ManagedRun>), UpError> {
    let mut defs = Vec::new();
    let mut runs = Vec::new();
    for (provider, ctx) in managed_services(runtime, model, env, opts)? {
        let (resource, def) = {
            let fail = managed_error(&ctx.service);
            ctx.ensure_data_dir().map_err(&fail)?;
            let resource = provider.provision(&ctx).await.map_err(&fail)?;
            let def = provider.service_def(&ctx, &resource).await.map_err(&fail)?;
            (resource, def)
        };
        defs.extend(def);
        runs.push(ManagedRun {
            provider,
            ctx,
            resource,
        });
    }
    Ok((defs, runs))
}

/// Removes the data of every Managed Service of `model` (`down --volumes`): each
/// provider's [`rt::managed::Provider::deprovision`], for a landscape that is stopped.
/// Returns the services whose data went.
pub async fn deprovision(
    runtime: Arc<Runtime>,
    model: &spec::Landscape,
    opts: &UpOptions,
) -> Result<Vec<String>, UpError> {
    let mut gone = Vec::new();
    for (provider, ctx) in managed_services(&runtime, model, &BTreeMap::new(), opts)? {
        if ctx.data_dir.exists() {
            provider
                .deprovision(&ctx)
                .await
                .map_err(managed_error(&ctx.service))?;
            gone.push(ctx.service.clone());
        }
    }
    Ok(gone)
}

/// Writes the resource id of every Managed Service beside the landscape's record
/// (`resources.json`, 0600): what a host shows, and what it finds the resources by.
fn write_resources(state_dir: &std::path::Path, managed: &[ManagedRun]) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    if managed.is_empty() {
        return;
    }
    let ids: BTreeMap<&str, &str> = managed
        .iter()
        .map(|m| (m.ctx.service.as_str(), m.resource.as_str()))
        .collect();
    let Ok(text) = serde_json::to_vec_pretty(&ids) else {
        return;
    };
    let path = state_dir.join("resources.json");
    let tmp = state_dir.join("resources.json.tmp");
    let written = std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&text))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!("write {}: {e}", path.display());
    }
}

/// Starts the scheduled backups (`backups:`) of the Managed Services that declare them.
fn start_backups(managed: &[ManagedRun]) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for m in managed {
        match rt::managed::BackupPolicy::from_context(&m.ctx) {
            Ok(Some(policy)) => tasks.push(tokio::spawn(rt::managed::run_backups(
                m.provider.clone(),
                m.ctx.clone(),
                policy,
            ))),
            Ok(None) => {}
            Err(e) => tracing::warn!(service = %m.ctx.service, "backups: {e}"),
        }
    }
    tasks
}

/// Waits until every service in `names` has a ready replica; the error names the one
/// that has none (as `what`: "managed service", "new service"), with its state, last exit
/// and last line.
async fn wait_services_ready(
    sup: &Arc<Supervisor>,
    names: &[String],
    timeout: Duration,
    what: &str,
) -> Result<(), UpError> {
    let deadline = tokio::time::Instant::now() + timeout;
    for name in names {
        let Some(mut ready) = sup.ready(name) else {
            continue;
        };
        loop {
            if !ready.borrow_and_update().is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, ready.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    let why = sup
                        .status()
                        .replicas
                        .into_iter()
                        .filter(|r| &r.service == name)
                        .map(|r| {
                            format!(
                                "{}{}{}{}",
                                state_name(r.state),
                                r.probe
                                    .as_ref()
                                    .map(|p| format!(", health check: {p}"))
                                    .unwrap_or_default(),
                                r.last_exit
                                    .map(|e| format!(", last exit: {e}"))
                                    .unwrap_or_default(),
                                r.last_lines
                                    .last()
                                    .map(|l| format!(", last line: {l}"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(UpError::Invalid(format!(
                        "{what} {name:?} not ready after {} s ({why})",
                        timeout.as_secs()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The new services of an apply that have no probe (workers): as at `up`
/// ([`UNPROBED_SETTLE`]), each replica must run that long; one that ends meanwhile (and
/// restarts) is a crash, with its exit and last lines.
async fn settle_new_workers(
    sup: &Arc<Supervisor>,
    names: &[String],
    timeout: Duration,
) -> Result<(), UpError> {
    let workers: Vec<String> = unprobed(sup)
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    let deadline = tokio::time::Instant::now() + timeout.max(UNPROBED_SETTLE);
    let mut events = sup.subscribe();
    loop {
        let status = sup.status();
        let mine: Vec<&rt::supervisor::ReplicaStatus> = status
            .replicas
            .iter()
            .filter(|r| workers.contains(&r.service))
            .collect();
        if let Some(r) = mine.iter().find(|r| r.restarts > 0) {
            return Err(UpError::Invalid(crash_loop_message(r)));
        }
        let left = mine
            .iter()
            .map(|r| settle_left(r))
            .max()
            .unwrap_or_default();
        if left.is_zero() {
            return Ok(());
        }
        let at = (tokio::time::Instant::now() + left).min(deadline);
        if tokio::time::Instant::now() >= deadline {
            return Err(UpError::Invalid(format!(
                "new worker(s) {} not running after {} s",
                workers.join(", "),
                timeout.as_secs()
            )));
        }
        // Woken by an event (an exit) or when the settle time is over.
        let _ = tokio::time::timeout_at(at, events.recv()).await;
    }
}

/// [`plan_services`], then the images pulled and applied: the definitions to supervise.
async fn plan_and_pull(
    runtime: &Arc<Runtime>,
    model: &spec::Landscape,
    env: &BTreeMap<String, Vec<(String, String)>>,
    opts: &UpOptions,
    progress: Arc<dyn Fn(rt::EventKind) + Send + Sync>,
) -> Result<Vec<ServiceDef>, UpError> {
    let (mut defs, uses) = plan_services(model, env, opts)?;
    if uses.is_empty() {
        return Ok(defs);
    }
    let (rt2, opts2, defs2) = (runtime.clone(), opts.clone(), defs.clone());
    let images = tokio::task::spawn_blocking(move || {
        pull_images(&rt2, &opts2, &defs2, &uses, &*progress).map(|i| (i, uses))
    })
    .await
    .map_err(|e| UpError::Invalid(format!("image task failed: {e}")))?;
    let (images, uses) = images?;
    use_images(&mut defs, &uses, &images)?;
    Ok(defs)
}

impl Landscape {
    /// Brings `model` up: checks it (nothing starts on a bad file), binds the router's
    /// listener, creates the network, runs `prepare` then `test` (events show their output),
    /// starts every service and serves the routes. `env` holds each service's rendered
    /// environment (secrets resolved by the host, e.g. with landscape-vault) and, for a
    /// Managed Service, its rendered `secrets` (provisioned first with
    /// [`UpOptions::providers`], data in [`UpOptions::data_dir`], ready before `prepare`). Returns as
    /// soon as the services are started; see [`Landscape::wait_ready`].
    pub async fn up(
        runtime: Arc<Runtime>,
        model: &spec::Landscape,
        env: BTreeMap<String, Vec<(String, String)>>,
        opts: UpOptions,
    ) -> Result<Landscape, UpError> {
        let (tx, _) = tokio::sync::mpsc::unbounded_channel();
        Self::up_with_events(runtime, model, env, opts, tx).await
    }

    /// [`Landscape::up`], sending every supervisor event (stage output included) to
    /// `events` from the moment the network exists.
    pub async fn up_with_events(
        runtime: Arc<Runtime>,
        model: &spec::Landscape,
        env: BTreeMap<String, Vec<(String, String)>>,
        opts: UpOptions,
        events: tokio::sync::mpsc::UnboundedSender<rt::Event>,
    ) -> Result<Landscape, UpError> {
        Self::bring_up(runtime, model, env, opts, events, false)
            .await
            .map(|(l, _)| l)
    }

    /// Takes over a landscape whose control process was killed (`kill -9`), from the
    /// record in `opts.state_dir` (written when [`UpOptions::durable`]): the same replica
    /// processes, not restarted; their logs continue; a new router on `opts.listen`.
    /// `model` and `env` are the current ci.yml and secrets: a service changed meanwhile is
    /// replaced one replica at a time, as [`Landscape::apply`] would. `prepare` and `test`
    /// do not run again. [`Landscape::has_record`] tells whether there is one to adopt.
    pub async fn adopt(
        runtime: Arc<Runtime>,
        model: &spec::Landscape,
        env: BTreeMap<String, Vec<(String, String)>>,
        opts: UpOptions,
        events: tokio::sync::mpsc::UnboundedSender<rt::Event>,
    ) -> Result<(Landscape, rt::supervisor::Adopted), UpError> {
        let (l, a) = Self::bring_up(runtime, model, env, opts, events, true).await?;
        Ok((l, a.unwrap_or_default()))
    }

    /// Whether `state_dir` holds the record of a landscape to [`Landscape::adopt`].
    pub fn has_record(state_dir: &std::path::Path) -> bool {
        state_dir.join(RECORDS).is_file()
    }

    async fn bring_up(
        runtime: Arc<Runtime>,
        model: &spec::Landscape,
        env: BTreeMap<String, Vec<(String, String)>>,
        opts: UpOptions,
        events: tokio::sync::mpsc::UnboundedSender<rt::Event>,
        adopt: bool,
    ) -> Result<(Landscape, Option<rt::supervisor::Adopted>), UpError> {
        // Everything is checked before anything is pulled, bound or started.
        plan_services(model, &env, &opts)?;
        let table = net::spec::table_from_landscape(model, &net::spec::SpecOptions::default())
            .map_err(|e| UpError::Invalid(e.to_string()))?;
        let progress = {
            let events = events.clone();
            Arc::new(move |kind| {
                let _ = events.send(rt::Event::now(kind));
            })
        };
        let defs = tokio::select! {
            d = plan_and_pull(&runtime, model, &env, &opts, progress) => d?,
            () = stop_asked(opts.stop.clone()) => return Err(UpError::Stopped),
        };
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| UpError::Listen {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| UpError::Listen {
            addr: opts.listen,
            source,
        })?;
        // Managed Services: provisioned (the first time: initdb...) or found again.
        let (managed_defs, managed) = provision_managed(&runtime, model, &env, &opts).await?;
        write_resources(&opts.state_dir, &managed);
        let managed_names = managed_defs.iter().map(|d| d.name.clone()).collect();
        let mut cfg = SupervisorConfig::new(
            opts.name.clone(),
            opts.app_dir.clone(),
            opts.state_dir.join("logs"),
        );
        cfg.probes = opts.probes;
        cfg.backoff = opts.backoff;
        cfg.stop_grace = opts.stop_grace;
        cfg.redact = opts.redact.clone();
        cfg.network.egress = opts.egress;
        cfg.pool = opts.pool;
        if opts.durable {
            cfg.records = Some(opts.state_dir.join(RECORDS));
        }
        let mut adopted = None;
        let sup = {
            let rt = runtime.clone();
            let mut defs = defs.clone();
            if adopt {
                defs.extend(managed_defs.iter().cloned());
            }
            tokio::task::spawn_blocking(move || {
                if adopt {
                    Supervisor::adopt(rt, cfg, defs).map(|(s, a)| (s, Some(a)))
                } else {
                    Supervisor::new(rt, cfg).map(|s| (s, None))
                }
            })
            .await
            .map_err(|e| UpError::Invalid(format!("supervisor task failed: {e}")))?
            .map(|(s, a)| {
                adopted = a;
                s
            })?
        };
        let sup = Arc::new(sup);
        let mut rx = sup.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if events.send(ev).is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        // The Managed Services first, ready before `prepare` (a migration step needs its
        // database).
        if !adopt && !managed_defs.is_empty() {
            let names: Vec<String> = managed_defs.iter().map(|d| d.name.clone()).collect();
            let started = sup.start(managed_defs.clone());
            let ready = match started {
                Ok(()) => tokio::select! {
                    r = wait_services_ready(&sup, &names, opts.managed_ready_timeout, "managed service") => r,
                    () = stop_asked(opts.stop.clone()) => Err(UpError::Stopped),
                },
                Err(e) => Err(UpError::Runtime(e)),
            };
            if let Err(e) = ready {
                let s = sup.clone();
                let _ = tokio::task::spawn_blocking(move || s.shutdown()).await;
                return Err(e);
            }
        }
        let backups = start_backups(&managed);
        // Stages, in order, off the async threads (not again when adopting).
        let mut stages = vec![("prepare", StepDef::from_stage(&model.prepare))];
        if adopt {
            stages.clear();
        }
        if opts.run_tests && !adopt {
            stages.push(("test", StepDef::from_stage(&model.test)));
        }
        for (stage, steps) in stages {
            let s = sup.clone();
            let mut task = tokio::task::spawn_blocking(move || s.run_stage(stage, &steps, &[]));
            let r = tokio::select! {
                r = &mut task => r,
                () = stop_asked(opts.stop.clone()) => {
                    // The shutdown stops the running step; its task then ends.
                    let s = sup.clone();
                    let _ = tokio::task::spawn_blocking(move || s.shutdown()).await;
                    let _ = task.await;
                    return Err(UpError::Stopped);
                }
            }
            .map_err(|e| UpError::Invalid(format!("stage task failed: {e}")))?;
            if let Err(f) = r {
                let s = sup.clone();
                let _ = tokio::task::spawn_blocking(move || s.shutdown()).await;
                return Err(f.into());
            }
        }
        if !adopt {
            sup.start(defs)?;
        }
        let routes = route_list(&table);
        let routed: Vec<String> = table
            .iter()
            .flat_map(|(_, r)| match &r.action {
                net::Action::Backends(b) => b.iter().map(|b| b.service.clone()).collect(),
                net::Action::Target(_) => Vec::new(),
            })
            .collect();
        let mut builder = net::Router::builder()
            .endpoints(Arc::new(SupervisorEndpoints { sup: sup.clone() }))
            .connector(Arc::new(NetworkConnector { sup: sup.clone() }));
        if opts.idle.any() {
            builder = builder.waker(Arc::new(SupervisorWaker { sup: sup.clone() }));
        }
        let router = builder.build(table);
        if opts.idle.any() {
            tokio::spawn(idle_loop(
                Arc::downgrade(&sup),
                router.clone(),
                opts.idle.clone(),
                routed,
            ));
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let r2 = router.clone();
        let server = tokio::spawn(async move {
            if let Err(e) = r2
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
            {
                tracing::error!("router: {e}");
            }
        });
        Ok((
            Landscape {
                sup,
                router,
                addr,
                stop: std::sync::Mutex::new(Some(stop)),
                server: tokio::sync::Mutex::new(Some(server)),
                routes: std::sync::Mutex::new(routes),
                opts,
                came_up: std::sync::atomic::AtomicBool::new(false),
                backups: std::sync::Mutex::new(backups),
                stages: [
                    StepDef::from_stage(&model.prepare),
                    StepDef::from_stage(&model.test),
                ],
                managed: std::sync::Mutex::new(managed_names),
            },
            adopted,
        ))
    }

    /// The router's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The public paths (and hosts, empty for any host) the router serves.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether [`Landscape::wait_ready`] has seen every replica ready once (replicas
    /// frozen or stopped while unused later do not change it).
    pub fn came_up(&self) -> bool {
        self.came_up.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// CPU and memory per running replica ([`Supervisor::usage`]).
    pub fn usage(&self) -> Vec<rt::ReplicaUsage> {
        self.sup.usage()
    }

    /// Prometheus text: the router's metrics (requests by route and status, latency
    /// histograms overall and per route, upstream errors, held requests, wakes) and per
    /// replica CPU seconds, memory and processes, and replicas by state.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = self.router.metrics_text();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let usage = self.sup.usage();
        for (name, help, kind, value) in [
            (
                "landscape_replica_cpu_seconds_total",
                "CPU time used by a replica's processes.",
                "counter",
                (|u: &rt::Usage| u.cpu_time_ns as f64 / 1e9) as fn(&rt::Usage) -> f64,
            ),
            (
                "landscape_replica_memory_bytes",
                "Memory in use by a replica.",
                "gauge",
                |u: &rt::Usage| u.memory_current as f64,
            ),
            (
                "landscape_replica_processes",
                "Processes (and threads, with cgroups) of a replica.",
                "gauge",
                |u: &rt::Usage| u.pids_current as f64,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for r in &usage {
                let _ = writeln!(
                    out,
                    "{name}{{service=\"{}\",replica=\"{}\"}} {}",
                    esc(&r.service),
                    r.replica,
                    value(&r.usage)
                );
            }
        }
        let mut states: BTreeMap<(String, String), usize> = BTreeMap::new();
        for r in self.sup.status().replicas {
            *states.entry((r.service, state_name(r.state))).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "# HELP landscape_replicas Replicas by service and state.\n# TYPE landscape_replicas gauge"
        );
        for ((service, state), n) in states {
            let _ = writeln!(
                out,
                "landscape_replicas{{service=\"{}\",state=\"{state}\"}} {n}",
                esc(&service)
            );
        }
        out
    }

    /// Serves `GET /metrics` ([`Landscape::metrics_text`]) and `GET /healthz` on
    /// `listener` (an admin address, e.g. 127.0.0.1:9100) until the landscape is dropped.
    pub async fn serve_admin(self: &Arc<Self>, listener: tokio::net::TcpListener) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let me = Arc::downgrade(self);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Some(land) = me.upgrade() else { return };
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(stream);
                let mut line = String::new();
                if r.read_line(&mut line).await.is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    match r.read_line(&mut h).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) if h.trim_end().is_empty() => break,
                        Ok(_) => {}
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let (code, ctype, body) = match path {
                    "/metrics" => ("200 OK", "text/plain; version=0.0.4", land.metrics_text()),
                    "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                    _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
                };
                drop(land);
                let mut s = r.into_inner();
                let head = format!(
                    "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    }

    /// The landscape's name.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// A snapshot of every replica.
    pub fn status(&self) -> rt::Status {
        self.sup.status()
    }

    /// The supervisor's events (replicas, stages, logs, rollouts).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<rt::Event> {
        self.sup.subscribe()
    }

    /// Sets the number of replicas of `service` (the others are not touched).
    pub async fn scale(&self, service: &str, replicas: u32) -> Result<(), UpError> {
        let (sup, name) = (self.sup.clone(), service.to_string());
        tokio::task::spawn_blocking(move || sup.scale(&name, replicas))
            .await
            .map_err(|e| UpError::Invalid(format!("scale task failed: {e}")))??;
        Ok(())
    }

    /// Restarts every replica of each of `services` (all services when empty), rolling:
    /// each replica is replaced by a fresh one that is ready before it leaves the load
    /// balancer ([`Supervisor::restart_rolling`]), so no request fails. A Managed Service
    /// (one instance on its data), a service without a health check (a worker, which may
    /// not run twice at once) and a frozen or asleep one are restarted in place instead.
    pub async fn restart(&self, services: &[String]) -> Result<(), UpError> {
        let names: Vec<String> = if services.is_empty() {
            self.sup.services().into_iter().map(|d| d.name).collect()
        } else {
            services.to_vec()
        };
        for name in &names {
            if !self.sup.services().iter().any(|d| &d.name == name) {
                return Err(UpError::Invalid(format!(
                    "no service {name:?} in landscape {}",
                    self.opts.name
                )));
            }
        }
        let sup = self.sup.clone();
        let managed = self
            .managed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokio::task::spawn_blocking(move || {
            for n in &names {
                // Rolling where a health check says when the fresh replica serves; in
                // place for a Managed Service (one instance on its data), a worker (which
                // may not run twice at once) and a frozen or asleep service (it stays so).
                let probed = sup
                    .services()
                    .iter()
                    .any(|d| &d.name == n && d.probe.is_some());
                let running = sup.power(n) == Some(rt::Power::Running);
                if probed && running && !managed.contains(n) {
                    sup.restart_rolling(n, RESTART_READY_TIMEOUT)?;
                } else {
                    sup.restart(n)?;
                }
            }
            Ok::<_, rt::Error>(())
        })
        .await
        .map_err(|e| UpError::Invalid(format!("restart task failed: {e}")))??;
        Ok(())
    }

    /// Brings the running landscape to a new `model` (an edited ci.yml): checked first
    /// like [`Landscape::up`] (nothing changes on bad input), then only what changed is
    /// touched ([`Supervisor::apply`]: changed services replaced one replica at a time,
    /// new ones ready before old ones leave the load balancer), and the router's table is
    /// swapped to the new routes. `prepare` and `test` are not run again.
    pub async fn apply(
        &self,
        model: &spec::Landscape,
        env: BTreeMap<String, Vec<(String, String)>>,
        ready_timeout: Duration,
    ) -> Result<Applied, UpError> {
        plan_services(model, &env, &self.opts)?;
        let table = net::spec::table_from_landscape(model, &net::spec::SpecOptions::default())
            .map_err(|e| UpError::Invalid(e.to_string()))?;
        let progress = {
            let sup = Arc::downgrade(&self.sup);
            Arc::new(move |kind| {
                if let Some(s) = sup.upgrade() {
                    s.publish(kind);
                }
            })
        };
        let runtime = self.sup.runtime().clone();
        let mut defs = plan_and_pull(&runtime, model, &env, &self.opts, progress).await?;
        let (managed_defs, managed) = provision_managed(&runtime, model, &env, &self.opts).await?;
        write_resources(&self.opts.state_dir, &managed);
        *self.managed.lock().unwrap_or_else(|e| e.into_inner()) =
            managed_defs.iter().map(|d| d.name.clone()).collect();
        defs.extend(managed_defs);
        let sup = self.sup.clone();
        let applied = tokio::task::spawn_blocking(move || sup.apply(defs, ready_timeout))
            .await
            .map_err(|e| UpError::Invalid(format!("apply task failed: {e}")))?;
        // The routes of the whole file are served from now on (those of a new service
        // that does not come up answer 503 until the next apply).
        let routes = route_list(&table);
        let routes_changed = {
            let old = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            *old != routes
        };
        self.router.swap(table);
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = routes;
        let stages_not_rerun = [("prepare", &model.prepare), ("test", &model.test)]
            .into_iter()
            .zip(&self.stages)
            .filter(|((_, stage), ran)| StepDef::from_stage(stage) != **ran)
            .map(|((name, _), _)| name.to_string())
            .collect();
        // New services are waited for like at `up`; one that does not come up is stopped
        // again (the rest of the change stays).
        if let Ok(a) = &applied {
            if !a.added.is_empty() {
                let waited =
                    match wait_services_ready(&self.sup, &a.added, ready_timeout, "new service")
                        .await
                    {
                        Ok(()) => settle_new_workers(&self.sup, &a.added, ready_timeout).await,
                        Err(e) => Err(e),
                    };
                if let Err(e) = waited {
                    let keep: Vec<rt::ServiceDef> = self
                        .sup
                        .services()
                        .into_iter()
                        .filter(|d| !a.added.contains(&d.name))
                        .collect();
                    let sup = self.sup.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || sup.apply(keep, ready_timeout)).await;
                    return Err(UpError::Invalid(format!(
                        "{e}; stopped it again: {} not started (the rest of the change is applied)",
                        a.added.join(", ")
                    )));
                }
            }
        }
        Ok(Applied {
            services: applied?,
            routes_changed,
            stages_not_rerun,
        })
    }

    /// The supervisor (status, events, scale, limits).
    pub fn supervisor(&self) -> &Arc<Supervisor> {
        &self.sup
    }

    /// The router (metrics, activity).
    pub fn router(&self) -> &net::Router {
        &self.router
    }

    /// Waits until every replica is ready; on timeout, the error names the replicas that
    /// are not, with their state and last exit. A service that the idle policy has
    /// frozen or put to sleep counts as up: it is parked only once all its replicas were
    /// ready, and on a slow host that can happen before the last service is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), UpError> {
        let mut events = self.sup.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        // A replica without a probe (a worker: no port, no healthEndpoint) is ready as soon
        // as it runs; `up` counts it once it has run for UNPROBED_SETTLE, so that a worker
        // that exits at once (a typo in its command) is a crash loop, not "ready".
        let unprobed = unprobed(&self.sup);
        let settling = |r: &rt::supervisor::ReplicaStatus| {
            r.state == rt::ReplicaState::Ready
                && unprobed.contains(&r.service)
                && !settle_left(r).is_zero()
        };
        // Restart counts of the crash-looping replicas once all others were up.
        let mut settled: Option<BTreeMap<(String, u32), u32>> = None;
        let mut looping: std::collections::BTreeSet<(String, u32)> = Default::default();
        // Set at the deadline: one more look, so that the message says how things stand
        // then (a failing health check makes no event).
        let mut timed_out = false;
        loop {
            let status = self.sup.status();
            let parked = |service: &str| {
                matches!(
                    self.sup.power(service),
                    Some(rt::Power::Frozen | rt::Power::Asleep)
                )
            };
            let waiting: Vec<&rt::supervisor::ReplicaStatus> = status
                .replicas
                .iter()
                .filter(|r| {
                    let resting = matches!(
                        r.state,
                        rt::ReplicaState::Frozen | rt::ReplicaState::Stopped
                    );
                    (r.state != rt::ReplicaState::Ready || settling(r))
                        && !(resting && parked(&r.service))
                })
                .collect();
            let pending: Vec<String> = waiting
                .iter()
                .map(|r| {
                    format!(
                        "{}-{} is {}{}{}",
                        r.service,
                        r.replica,
                        state_name(r.state),
                        r.probe
                            .as_ref()
                            .map(|p| format!(" (health check: {p})"))
                            .unwrap_or_default(),
                        r.last_exit
                            .as_ref()
                            .map(|e| format!(" (last exit: {e})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            // A replica that keeps crashing once everything else is up (so it is not waiting
            // for a service that starts slower) will not come up by waiting: say so, with
            // its last exit and output.
            // (A replica counts as looping from its first `crash-loop` until it is ready:
            // between two crashes it is restarting or starting.)
            for r in &status.replicas {
                let key = (r.service.clone(), r.replica);
                match r.state {
                    rt::ReplicaState::CrashLoop => {
                        looping.insert(key);
                    }
                    rt::ReplicaState::Ready if !settling(r) => {
                        looping.remove(&key);
                    }
                    _ => {}
                }
            }
            let key = |r: &rt::supervisor::ReplicaStatus| (r.service.clone(), r.replica);
            if !waiting.is_empty() && waiting.iter().all(|r| looping.contains(&key(r))) {
                let base = settled.get_or_insert_with(BTreeMap::new);
                for r in &waiting {
                    // Two more crashes: the second comes from a start made after all
                    // others were up (the first may be a try begun before).
                    let seen = *base.entry(key(r)).or_insert(r.restarts);
                    if r.restarts >= seen + 2 {
                        return Err(UpError::Invalid(crash_loop_message(r)));
                    }
                }
            } else {
                settled = None;
            }
            if pending.is_empty() {
                self.came_up
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Ok(());
            }
            if timed_out {
                return Err(UpError::Invalid(format!(
                    "not ready after {} s: {}",
                    timeout.as_secs(),
                    pending.join("; ")
                )));
            }
            // Woken by the next event, when the next settling replica has settled, or at
            // the deadline.
            let wake = waiting
                .iter()
                .filter(|r| settling(r))
                .map(|r| tokio::time::Instant::now() + settle_left(r))
                .min()
                .filter(|at| *at < deadline)
                .unwrap_or(deadline);
            match tokio::time::timeout_at(wake, events.recv()).await {
                Err(_) if wake == deadline => timed_out = true,
                Err(_) => {}
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    return Err(UpError::Invalid("the supervisor stopped".into()))
                }
                Ok(_) => {}
            }
        }
    }

    /// Stops the router (in-flight requests drain) and every replica, removes the network.
    pub async fn down(self) {
        self.shutdown().await;
    }

    /// [`Landscape::down`] through a shared reference (e.g. from a control API); later
    /// calls return at once.
    pub async fn shutdown(&self) {
        let stop = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(s) = stop {
            let _ = s.send(());
        }
        if let Some(h) = self.server.lock().await.take() {
            let _ = h.await;
        }
        for b in self
            .backups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            b.abort();
        }
        let sup = self.sup.clone();
        let _ = tokio::task::spawn_blocking(move || sup.shutdown()).await;
    }
}

/// The public `(path, host)` pairs of a route table (host empty for any).
fn route_list(table: &net::RouteTable) -> Vec<(String, String)> {
    table
        .iter()
        .map(|(host, r)| {
            (
                r.prefix.clone(),
                host.map(str::to_string).unwrap_or_default(),
            )
        })
        .collect()
}

/// Freezes, then stops, the routed services that have been unused for their policy's
/// periods; ends with the supervisor.
async fn idle_loop(
    sup: std::sync::Weak<Supervisor>,
    router: net::Router,
    idle: IdleConfig,
    routed: Vec<String>,
) {
    use std::time::{SystemTime, UNIX_EPOCH};
    let now_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    // Since when each service counts as unused: its last request, or the moment it was
    // last seen in use (busy, just started or just woken).
    let mut used_at: BTreeMap<String, u64> = BTreeMap::new();
    let tick = [idle.default]
        .iter()
        .chain(idle.services.values())
        .flat_map(|p| [p.freeze_after, p.stop_after])
        .flatten()
        .min()
        .map_or(Duration::from_secs(1), |d| {
            (d / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
        });
    let mut services = routed;
    services.sort();
    services.dedup();
    loop {
        tokio::time::sleep(tick).await;
        let Some(sup) = sup.upgrade() else { return };
        let now = now_ms();
        for svc in &services {
            let policy = idle.policy(svc);
            if policy.freeze_after.is_none() && policy.stop_after.is_none() {
                continue;
            }
            let Some(power) = sup.power(svc) else {
                continue;
            };
            let act = router.activity(svc).unwrap_or_default();
            let seen = used_at.entry(svc.clone()).or_insert(now);
            if act.is_active() || power == rt::Power::Running && !all_ready(&sup, svc) {
                *seen = now;
                continue;
            }
            let since = (*seen).max(act.last_request_unix_ms);
            let unused = Duration::from_millis(now.saturating_sub(since));
            let s = sup.clone();
            let name = svc.clone();
            if policy.stop_after.is_some_and(|d| unused >= d) && power != rt::Power::Asleep {
                let _ = tokio::task::spawn_blocking(move || s.sleep(&name)).await;
            } else if policy.freeze_after.is_some_and(|d| unused >= d)
                && power == rt::Power::Running
            {
                let _ = tokio::task::spawn_blocking(move || s.freeze(&name)).await;
            }
        }
    }
}

fn all_ready(sup: &Supervisor, service: &str) -> bool {
    sup.status()
        .replicas
        .iter()
        .filter(|r| r.service == service)
        .all(|r| r.state == rt::ReplicaState::Ready)
}

/// landscape-net's [`net::ServiceWaker`] over the supervisor: a request for a frozen or
/// asleep service thaws or starts it; the router releases the held request the moment a
/// replica is ready again.
pub struct SupervisorWaker {
    sup: Arc<Supervisor>,
}

impl SupervisorWaker {
    /// Wakes `sup`'s services.
    pub fn new(sup: Arc<Supervisor>) -> Self {
        SupervisorWaker { sup }
    }
}

#[async_trait::async_trait]
impl net::ServiceWaker for SupervisorWaker {
    fn can_wake(&self, service: &str) -> bool {
        matches!(
            self.sup.power(service),
            Some(rt::Power::Frozen | rt::Power::Asleep)
        )
    }

    async fn wake(&self, service: &str) -> Result<(), net::WakeError> {
        let (sup, name) = (self.sup.clone(), service.to_string());
        tokio::task::spawn_blocking(move || sup.wake(&name))
            .await
            .map_err(|e| net::WakeError(format!("wake task failed: {e}")))?
            .map_err(|e| net::WakeError(e.to_string()))
    }
}

/// landscape-net's [`net::EndpointSource`] over the supervisor: the ready replicas of a
/// service, as `address:port`, updated the moment readiness changes.
pub struct SupervisorEndpoints {
    sup: Arc<Supervisor>,
}

impl SupervisorEndpoints {
    /// The endpoints of `sup`'s services.
    pub fn new(sup: Arc<Supervisor>) -> Self {
        SupervisorEndpoints { sup }
    }
}

fn to_endpoints(addrs: &[std::net::Ipv4Addr], port: u16) -> Endpoints {
    addrs
        .iter()
        .map(|a| Endpoint::from(SocketAddr::V4(SocketAddrV4::new(*a, port))))
        .collect::<Vec<_>>()
        .into()
}

impl net::EndpointSource for SupervisorEndpoints {
    fn watch(&self, service: &str, port: u16) -> watch::Receiver<Endpoints> {
        let Some(mut ready) = self.sup.ready(service) else {
            return watch::channel(Endpoints::from(Vec::new())).1;
        };
        let (tx, rx) = watch::channel(to_endpoints(&ready.borrow_and_update(), port));
        let forward = async move {
            while ready.changed().await.is_ok() {
                let eps = to_endpoints(&ready.borrow_and_update(), port);
                if tx.send(eps).is_err() {
                    break;
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(forward);
            }
            Err(_) => {
                std::thread::spawn(move || {
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() {
                        rt.block_on(forward);
                    }
                });
            }
        }
        rx
    }
}

/// landscape-net's [`net::Connector`] into the landscape network: a socket made inside
/// the network (handed over by its holder, pooled) connected from the router's own event
/// loop with the kernel's TCP stack.
pub struct NetworkConnector {
    sup: Arc<Supervisor>,
}

impl NetworkConnector {
    /// Connections into `sup`'s network.
    pub fn new(sup: Arc<Supervisor>) -> Self {
        NetworkConnector { sup }
    }
}

#[async_trait::async_trait]
impl net::Connector for NetworkConnector {
    async fn connect(&self, endpoint: &Endpoint) -> std::io::Result<net::BoxIo> {
        let addr: SocketAddrV4 = endpoint.authority().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("endpoint {endpoint} is not an IPv4 address:port"),
            )
        })?;
        let fd = self
            .sup
            .network()
            .tcp_socket()
            .map_err(std::io::Error::other)?;
        let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
        let stream = socket.connect(SocketAddr::V4(addr)).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}
