//! `landscape router`: serve the routes of a ci.yml on a public listener, with upstreams given
//! on the command line. SIGHUP re-reads the file and swaps the route table atomically;
//! SIGINT/SIGTERM drain in-flight requests and exit.

use landscape::net::spec::SpecOptions;
use landscape::net::standalone::{run as run_router, Options, RunError};
use landscape::net::RouterConfig;
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
    /// Serve HTTPS (ALPN h2 + http/1.1) with this PEM certificate chain, leaf first
    /// (needs the `tls` feature).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra trusted root certificates (PEM) for https:// targets, added to the system's
    /// (needs the `tls` feature).
    #[arg(long, value_name = "FILE")]
    target_ca: Option<PathBuf>,
    /// Seconds in-flight requests may take to finish on shutdown.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// The ci.yml to route.
    file: PathBuf,
}

/// Runs `landscape router`.
pub fn run(args: Args) -> ExitCode {
    if !cfg!(feature = "tls")
        && (args.tls_cert.is_some() || args.tls_key.is_some() || args.target_ca.is_some())
    {
        eprintln!(
            "landscape router: --tls-cert/--tls-key/--target-ca need the `tls` feature; \
             rebuild with `cargo build --example landscape --features tls`"
        );
        return ExitCode::from(2);
    }
    let opts = Options {
        listen: args.listen,
        admin: args.admin,
        upstreams: args.upstreams,
        file: args.file,
        spec: SpecOptions {
            workspace_id: args.workspace,
            dev_domain: args.domain,
            ..Default::default()
        },
        threads: args.threads,
        config: RouterConfig {
            drain_timeout: Duration::from_secs(args.drain_secs),
            ..RouterConfig::default()
        },
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        target_ca: args.target_ca,
    };
    match run_router(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ RunError::Usage(_)) => {
            eprintln!("landscape router: {e}");
            ExitCode::from(2)
        }
        Err(e @ RunError::Routes(_)) => {
            eprintln!("landscape router: {e}");
            ExitCode::from(1)
        }
    }
}
