//! Minimal host: `run [exec] [--app DIR] [--image host|rootfs:DIR] -- CMD [ARG...]` runs one
//! instance in the foreground (the same path as `landscape exec`, whose flags it accepts
//! for these cases) and exits with its status. `benches/exec-vs-others.sh` can use it
//! through `LANDSCAPE=target/release/examples/run` when the full CLI is not built.

use landscape_runtime::{InstanceSpec, Process, Rootfs, Runtime};
use std::process::ExitCode;

fn main() -> ExitCode {
    landscape_runtime::init();
    let mut args = std::env::args().skip(1);
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
