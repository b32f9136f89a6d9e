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
    rt.block_on(serve(opts, table, endpoints))
}

async fn serve(
    opts: Options,
    table: RouteTable,
    endpoints: Arc<StaticEndpoints>,
) -> Result<(), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    for (host, r) in table.iter() {
        eprintln!("route {}{} -> {}", host.unwrap_or("*"), r.prefix, r.name);
    }
    let router = Router::builder()
        .config(opts.config.clone())
        .endpoints(endpoints)
        .build(table);
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
    eprintln!(
        "router listening on {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
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
    let server = tokio::spawn(async move { r.serve(listener, stop).await });
    loop {
        tokio::select! {
            _ = hup.recv() => match load(&opts) {
                Ok(t) => {
                    let n = t.len();
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
