//! A complete router process: routes from a ci.yml file, static upstreams, optional admin
//! listener, SIGHUP reload, SIGINT/SIGTERM drain. Used by the `landscape router` command.

use crate::error::Error;
use crate::spec::{table_from_str, SpecOptions};
use crate::{RouteTable, Router, RouterConfig, StaticEndpoints};
use std::path::PathBuf;
use std::sync::Arc;

/// What [`run`] needs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Public listener address.
    pub listen: String,
    /// Admin listener address (`/metrics`, `/activity`, `/healthz`).
    pub admin: Option<String>,
    /// `SERVICE[:PORT]=HOST:PORT[,HOST:PORT...]` entries.
    pub upstreams: Vec<String>,
    /// The ci.yml to route (re-read on SIGHUP).
    pub file: PathBuf,
    /// Workspace id and domain for public-port host routes and target templates.
    pub spec: SpecOptions,
    /// Worker threads (default: one per CPU).
    pub threads: Option<usize>,
    /// Limits and timeouts.
    pub config: RouterConfig,
    /// Serve HTTPS on the public listener with this PEM certificate chain (leaf first) and
    /// [`Options::tls_key`] (feature `tls`; without it, setting this is a usage error).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of [`Options::tls_cert`].
    pub tls_key: Option<PathBuf>,
    /// Extra trusted root certificates (PEM) for `https://` targets, added to the system's
    /// (feature `tls`).
    pub target_ca: Option<PathBuf>,
}

/// Whether this build can serve HTTPS and reach `https://` targets (the `tls` feature).
pub const TLS_SUPPORTED: bool = cfg!(feature = "tls");

/// The TLS material of [`Options`], read and checked before anything is bound.
struct Tls {
    #[cfg(feature = "tls")]
    server: Option<Arc<crate::tls::rustls::ServerConfig>>,
    #[cfg(feature = "tls")]
    client: Option<Arc<crate::tls::rustls::ClientConfig>>,
}

#[cfg(feature = "tls")]
fn read(what: &str, path: &std::path::Path) -> Result<Vec<u8>, RunError> {
    std::fs::read(path).map_err(|e| RunError::Usage(format!("{what} {}: {e}", path.display())))
}

fn tls_material(opts: &Options) -> Result<Tls, RunError> {
    let wants = opts.tls_cert.is_some() || opts.tls_key.is_some() || opts.target_ca.is_some();
    if opts.tls_cert.is_some() != opts.tls_key.is_some() {
        return Err(RunError::Usage(
            "--tls-cert and --tls-key go together (a PEM certificate chain and its private key)"
                .into(),
        ));
    }
    if wants && !TLS_SUPPORTED {
        return Err(RunError::Usage(
            "--tls-cert/--tls-key/--target-ca need the `tls` feature, which this build lacks \
             (cargo build --example landscape --features tls)"
                .into(),
        ));
    }
    #[cfg(feature = "tls")]
    {
        let server = match (&opts.tls_cert, &opts.tls_key) {
            (Some(c), Some(k)) => {
                let (cert, key) = (read("--tls-cert", c)?, read("--tls-key", k)?);
                Some(
                    crate::tls::server_config(&cert, &key)
                        .map_err(|e| RunError::Usage(format!("--tls-cert/--tls-key: {e}")))?,
                )
            }
            _ => None,
        };
        let client = match &opts.target_ca {
            Some(p) => {
                let pem = read("--target-ca", p)?;
                let bad = |e: String| RunError::Usage(format!("--target-ca {}: {e}", p.display()));
                let mut roots = crate::tls::system_roots();
                for c in crate::tls::roots_from_pem(&pem).map_err(|e| bad(e.to_string()))? {
                    roots.add(c).map_err(|e| bad(e.to_string()))?;
                }
                Some(crate::tls::client_config(roots).map_err(|e| bad(e.to_string()))?)
            }
            None => None,
        };
        Ok(Tls { server, client })
    }
    #[cfg(not(feature = "tls"))]
    Ok(Tls {})
}

/// Warns (on stderr) about routes this build cannot serve.
fn warn_unservable(table: &RouteTable) {
    if TLS_SUPPORTED {
        return;
    }
    for (host, r) in table.iter() {
        if let crate::Action::Target(t) = &r.action {
            if t.scheme == "https" {
                eprintln!(
                    "warning: route {}{} -> https://{}{}: this build lacks the `tls` feature; \
                     requests to it will get 502",
                    host.unwrap_or("*"),
                    r.prefix,
                    t.host_header,
                    t.base_path
                );
            }
        }
    }
}

/// Why [`run`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad arguments, unreadable file, unbindable address (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The ci.yml has errors or cannot be routed (exit code 1).
    #[error("{0}")]
    Routes(String),
}

/// Reads and compiles the route table of `opts.file`.
pub fn load(opts: &Options) -> Result<RouteTable, RunError> {
    let src = std::fs::read_to_string(&opts.file)
        .map_err(|e| RunError::Usage(format!("cannot read {}: {e}", opts.file.display())))?;
    table_from_str(&opts.file.display().to_string(), &src, &opts.spec)
        .map_err(|e| RunError::Routes(e.to_string()))
}

/// Runs the router until SIGINT/SIGTERM, reporting progress on stderr (this is a process's
/// main loop, not library code: it builds its own tokio runtime).
pub fn run(opts: Options) -> Result<(), RunError> {
    let table = load(&opts)?;
    let tls = tls_material(&opts)?;
    let endpoints = StaticEndpoints::new();
    for u in &opts.upstreams {
        endpoints
            .set_from_arg(u)
            .map_err(|e| RunError::Usage(e.to_string()))?;
    }
    // One thread: a current-thread runtime (no work-stealing overhead).
    let mut rt = match opts.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt
        .enable_all()
        .build()
        .map_err(|e| RunError::Usage(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(serve(opts, table, endpoints, tls))
}

async fn serve(
    opts: Options,
    table: RouteTable,
    endpoints: Arc<StaticEndpoints>,
    tls: Tls,
) -> Result<(), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    for (host, r) in table.iter() {
        eprintln!("route {}{} -> {}", host.unwrap_or("*"), r.prefix, r.name);
    }
    warn_unservable(&table);
    #[allow(unused_mut)] // without `tls`
    let mut builder = Router::builder()
        .config(opts.config.clone())
        .endpoints(endpoints);
    #[cfg(feature = "tls")]
    if let Some(c) = tls.client {
        builder = builder.upstream_tls(c);
    }
    let router = builder.build(table);
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .map_err(|e| {
            RunError::Usage(
                Error::Listen {
                    what: "router listener",
                    addr: opts.listen.clone(),
                    source: e,
                }
                .to_string(),
            )
        })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin_task = match &opts.admin {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a).await.map_err(|e| {
                RunError::Usage(
                    Error::Listen {
                        what: "admin listener",
                        addr: a.clone(),
                        source: e,
                    }
                    .to_string(),
                )
            })?;
            eprintln!(
                "admin listening on {}",
                l.local_addr().map(|a| a.to_string()).unwrap_or_default()
            );
            let r = router.clone();
            let stop = stopped(stop_rx.clone());
            Some(tokio::spawn(async move { r.serve_admin(l, stop).await }))
        }
        None => None,
    };
    #[cfg(feature = "tls")]
    let server_tls = tls.server;
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    #[cfg(not(feature = "tls"))]
    let server_tls: Option<std::convert::Infallible> = None;
    eprintln!(
        "router listening on {} ({})",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        if server_tls.is_some() {
            "https"
        } else {
            "http"
        }
    );
    let sig =
        |k| signal(k).map_err(|e| RunError::Usage(format!("cannot install signal handlers: {e}")));
    let (mut hup, mut int, mut term) = (
        sig(SignalKind::hangup())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::terminate())?,
    );
    let r = router.clone();
    let stop = stopped(stop_rx.clone());
    let server = tokio::spawn(async move {
        match server_tls {
            #[cfg(feature = "tls")]
            Some(cfg) => r.serve_tls(listener, cfg, stop).await,
            #[cfg(not(feature = "tls"))]
            Some(never) => match never {},
            None => r.serve(listener, stop).await,
        }
    });
    loop {
        tokio::select! {
            _ = hup.recv() => match load(&opts) {
                Ok(t) => {
                    let n = t.len();
                    warn_unservable(&t);
                    router.swap(t);
                    eprintln!("reloaded {}: {n} routes", opts.file.display());
                }
                Err(e) => eprintln!("reload failed: {e}\nkeeping the previous routes"),
            },
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    eprintln!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    let result = match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(RunError::Usage(e.to_string())),
        Err(e) => Err(RunError::Usage(format!("server task failed: {e}"))),
    };
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    result
}
