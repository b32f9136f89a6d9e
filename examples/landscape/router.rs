//! `landscape router`: serve the routes of a ci.yml on a public listener, with upstreams given
//! on the command line. SIGHUP re-reads the file and swaps the route table atomically;
//! SIGINT/SIGTERM drain in-flight requests and exit.

use landscape::net::spec::{table_from_str, SpecOptions};
use landscape::net::tokio;
use landscape::net::{Router, RouterConfig, StaticEndpoints};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `landscape router`.
#[derive(clap::Args)]
pub struct Args {
    /// Public listener address, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Admin listener (Prometheus `/metrics`, `/activity`, `/healthz`).
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Where a service runs: SERVICE[:PORT]=HOST:PORT[,HOST:PORT...] (repeatable).
    #[arg(long = "upstream", value_name = "SERVICE=HOST:PORT")]
    upstreams: Vec<String>,
    /// Workspace id, for public-port host routes `<workspace>-<port>-<service>.<domain>`.
    #[arg(long, default_value = "")]
    workspace: String,
    /// Domain of public-port host routes (none without it).
    #[arg(long, default_value = "")]
    domain: String,
    /// Worker threads of the router (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds in-flight requests may take to finish on shutdown.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// The ci.yml to route.
    file: PathBuf,
}

fn load(args: &Args) -> Result<landscape::net::RouteTable, (u8, String)> {
    let src = std::fs::read_to_string(&args.file).map_err(|e| {
        (
            2,
            format!("landscape router: cannot read {}: {e}", args.file.display()),
        )
    })?;
    let opts = SpecOptions {
        workspace_id: args.workspace.clone(),
        dev_domain: args.domain.clone(),
        ..Default::default()
    };
    table_from_str(&args.file.display().to_string(), &src, &opts)
        .map_err(|e| (1, format!("landscape router: {e}")))
}

/// Runs `landscape router`.
pub fn run(args: Args) -> ExitCode {
    let table = match load(&args) {
        Ok(t) => t,
        Err((code, msg)) => {
            eprintln!("{msg}");
            return ExitCode::from(code);
        }
    };
    let endpoints = StaticEndpoints::new();
    for u in &args.upstreams {
        if let Err(e) = endpoints.set_from_arg(u) {
            eprintln!("landscape router: {e}");
            return ExitCode::from(2);
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("landscape router: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(serve(args, table, endpoints))
}

async fn serve(
    args: Args,
    table: landscape::net::RouteTable,
    endpoints: std::sync::Arc<StaticEndpoints>,
) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    for (host, r) in table.iter() {
        eprintln!("route {}{} -> {}", host.unwrap_or("*"), r.prefix, r.name);
    }
    let config = RouterConfig {
        drain_timeout: Duration::from_secs(args.drain_secs),
        ..RouterConfig::default()
    };
    let router = Router::builder()
        .config(config)
        .endpoints(endpoints)
        .build(table);
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("landscape router: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_task = match &args.admin {
        Some(a) => match tokio::net::TcpListener::bind(a).await {
            Ok(l) => {
                eprintln!(
                    "admin listening on {}",
                    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
                );
                let r = router.clone();
                let mut rx = stop_rx.clone();
                Some(tokio::spawn(async move {
                    r.serve_admin(l, async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await
                }))
            }
            Err(e) => {
                eprintln!("landscape router: cannot listen on {a} (admin): {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    eprintln!(
        "router listening on {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let (mut hup, mut int, mut term) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(h), Ok(i), Ok(t)) => (h, i, t),
        _ => {
            eprintln!("landscape router: cannot install signal handlers");
            return ExitCode::from(2);
        }
    };
    let r = router.clone();
    let mut rx = stop_rx.clone();
    let server = tokio::spawn(async move {
        r.serve(listener, async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
    });
    loop {
        tokio::select! {
            _ = hup.recv() => match load(&args) {
                Ok(t) => {
                    let n = t.len();
                    router.swap(t);
                    eprintln!("reloaded {}: {n} routes", args.file.display());
                }
                Err((_, msg)) => eprintln!("{msg}\nkeeping the previous routes"),
            },
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    eprintln!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    let code = match server.await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("landscape router: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("landscape router: server task failed: {e}");
            ExitCode::from(1)
        }
    };
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    code
}
