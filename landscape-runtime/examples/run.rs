//! Minimal host: `run [exec] [--app DIR] [--image host|rootfs:DIR] -- CMD [ARG...]` runs one
//! instance in the foreground (the same path as `landscape exec`, whose flags it accepts
//! for these cases) and exits with its status. `benches/exec-vs-others.sh` can use it
//! through `LANDSCAPE=target/release/examples/run` when the full CLI is not built.

use landscape_runtime::{InstanceSpec, Process, Rootfs, Runtime};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Only `spawn-bench` starts instances with `Runtime::spawn`; the foreground mode, like
    // `landscape exec`, does not need the fork server.
    let spawn = std::env::args().nth(1).as_deref() == Some("spawn-bench");
    landscape_runtime::init_with(landscape_runtime::InitOptions { fork_server: spawn });
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("spawn-bench") {
        args.next();
        let rootfs = args.next();
        let n = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
        return spawn_bench(rootfs, n);
    }
    let mut spec = InstanceSpec::new("run", Process::default());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--app" => spec.app_dir = args.next().map(Into::into),
            "exec" => {}
            "--image" => match args.next() {
                Some(i) if i == "host" => spec.rootfs = Rootfs::Host,
                Some(i) if i.starts_with("rootfs:") => {
                    spec.rootfs = Rootfs::Dir(i["rootfs:".len()..].into())
                }
                other => {
                    eprintln!("run: --image {other:?}: only host and rootfs:DIR here; use `landscape exec` for OCI images");
                    return ExitCode::from(2);
                }
            },
            "--" => break,
            other => {
                eprintln!("run: unknown argument {other:?}; usage: run [exec] [--app DIR] [--image host|rootfs:DIR] -- CMD [ARG...]");
                return ExitCode::from(2);
            }
        }
    }
    spec.process.args = args.collect();
    let runtime = match Runtime::with_defaults() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("run: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.run_foreground(&spec, &mut |_| {}) {
        Ok(exit) => {
            if let Some(e) = &exit.error {
                eprintln!("run: {e}");
            }
            ExitCode::from(exit.status_code().clamp(0, 255) as u8)
        }
        Err(e) => {
            eprintln!("run: {e}");
            ExitCode::from(2)
        }
    }
}

/// `run spawn-bench ROOTFS N`: median of spawn + wait of `/bin/true` through the API:
/// helpers forked by the fork server, re-executed helpers, pre-warmed re-executed helpers.
fn spawn_bench(rootfs: Option<String>, n: usize) -> ExitCode {
    for (mode, prewarm, fork_server) in [
        ("fork-server", 0, true),
        ("re-exec", 0, false),
        ("re-exec-prewarm2", 2, false),
    ] {
        let cfg = landscape_runtime::RuntimeConfig {
            prewarm,
            fork_server,
            ..Default::default()
        };
        let runtime = match Runtime::new(cfg) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("run: {e}");
                return ExitCode::from(2);
            }
        };
        let mut spec = InstanceSpec::new("bench", Process::argv(["/bin/true"]));
        if let Some(r) = &rootfs {
            spec.rootfs = Rootfs::Dir(r.into());
        }
        let mut samples = Vec::new();
        for _ in 0..n {
            // Let the background refill finish so each spawn finds a warm helper.
            while runtime.idle_helpers() < prewarm {
                std::thread::yield_now();
            }
            let t = std::time::Instant::now();
            let ok = runtime
                .spawn(&spec, landscape_runtime::Output::Null)
                .and_then(|mut i| i.wait())
                .map(|e| e.success())
                .unwrap_or(false);
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            if !ok {
                eprintln!("run: instance failed");
                return ExitCode::from(1);
            }
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "api spawn+wait helper={mode} p50_ms={:.2}",
            samples[samples.len() / 2]
        );
    }
    ExitCode::SUCCESS
}
