//! A tiny test runner for `harness = false` targets: `main` must call
//! `landscape_runtime::init()` before anything else so that the runtime can re-execute
//! this binary as its helper, which the libtest harness (threads first) cannot do.

#![allow(dead_code)]

use landscape_runtime::{Exit, InstanceSpec, LogConfig, Output, Process, Runtime};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One test: name and function.
pub type Test = (&'static str, fn());

/// Runs the tests whose names contain any non-flag argument (all without one), like
/// libtest; exits 101 when one failed.
pub fn run(tests: &[Test]) -> ! {
    landscape_runtime::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        std::process::exit(0);
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let exact = args.iter().any(|a| a == "--exact");
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|(n, _)| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if exact {
                        n == f
                    } else {
                        n.contains(f.as_str())
                    }
                })
        })
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, f) in &selected {
        let start = Instant::now();
        let r = std::panic::catch_unwind(f);
        let ms = start.elapsed().as_millis();
        match r {
            Ok(()) => println!("test {name} ... ok ({ms} ms)"),
            Err(_) => {
                println!("test {name} ... FAILED ({ms} ms)");
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        std::process::exit(0)
    }
    for f in failed {
        println!("    {f}");
    }
    std::process::exit(101)
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "landscape-rt-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The runtime under test.
pub fn runtime() -> Runtime {
    Runtime::with_defaults().expect("runtime")
}

/// An app directory for an instance (the container user, default 0:0, can write it: as
/// root through an idmapped mount).
pub fn app_dir(_rt: &Runtime) -> TempDir {
    TempDir::new("app")
}

/// Runs `script` with `/bin/sh -c` in a fresh instance with `app` mounted; returns the
/// exit and everything it printed (stdout and stderr, in log order).
pub fn sh(rt: &Runtime, app: Option<&Path>, script: &str) -> (Exit, String) {
    let mut spec = InstanceSpec::new("t", Process::shell(script));
    spec.app_dir = app.map(Path::to_path_buf);
    run_spec(rt, &spec)
}

/// Runs `spec` to completion, capturing its output through the log files; returns the
/// exit and its stdout lines.
pub fn run_spec(rt: &Runtime, spec: &InstanceSpec) -> (Exit, String) {
    let (exit, out, _) = run_spec3(rt, spec);
    (exit, out)
}

/// Like [`run_spec`], also returning stderr (the two streams are read concurrently, so
/// only the order within each stream is defined).
pub fn run_spec3(rt: &Runtime, spec: &InstanceSpec) -> (Exit, String, String) {
    let logs = TempDir::new("logs");
    let mut inst = rt
        .spawn(spec, Output::Logs(LogConfig::new(logs.path())))
        .expect("spawn");
    let exit = inst.wait().expect("wait");
    let text = std::fs::read_to_string(inst.log_path().unwrap()).unwrap_or_default();
    let lines: Vec<landscape_runtime::LogLine> = text
        .lines()
        .filter_map(landscape_runtime::logs::parse_line)
        .collect();
    let pick = |s: landscape_runtime::Stream| {
        lines
            .iter()
            .filter(|l| l.stream == s)
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    (
        exit,
        pick(landscape_runtime::Stream::Stdout),
        pick(landscape_runtime::Stream::Stderr),
    )
}

/// Polls `f` until it returns `Some` or `limit` passes.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Host uid of process `pid` (real uid), from /proc.
pub fn host_uid_of(pid: i32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Children (host pids) of `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
