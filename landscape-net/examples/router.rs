//! A stand-alone router process (the same code as `landscape router`), for benchmarks:
//! `router --listen ADDR [--admin ADDR] [--threads N] [--upstream S=H:P]... FILE`.

use landscape_net::standalone::{run, Options, RunError};

fn main() -> std::process::ExitCode {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--listen" => opts.listen = val(),
            "--admin" => opts.admin = Some(val()),
            "--upstream" => opts.upstreams.push(val()),
            "--threads" => opts.threads = val().parse().ok(),
            "--workspace" => opts.spec.workspace_id = val(),
            "--domain" => opts.spec.dev_domain = val(),
            _ => opts.file = a.into(),
        }
    }
    match run(opts) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e @ RunError::Usage(_)) => {
            eprintln!("router: {e}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("router: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
