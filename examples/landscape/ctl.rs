//! `landscape ps`, `logs`, `scale`, `restart`, `down`: talk to the control process of a
//! running landscape (`landscape::control`, a unix socket in the landscape's state
//! directory). Exit codes: 0 done; 1 the landscape is not running or refused the request
//! (`down` of a stopped landscape is 0); 2 usage or I/O errors.

use crate::up::locate;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `landscape ps`.
#[derive(clap::Args)]
pub struct PsArgs {
    /// The landscape directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// `table` or `json` (one array of objects with the keys service, replica, state, pid,
    /// address, restarts, uptime_s, last_exit).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Add CPU (% over half a second) and memory per replica (from its cgroups, or its
    /// processes in /proc when it has none); JSON rows then also have `cpu_percent`,
    /// `memory_bytes` and `processes`.
    #[arg(long)]
    stats: bool,
}

/// Arguments of `landscape logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// The landscape directory (when it holds a ci.yml; otherwise the first word is a
    /// service) and the services to show (default: all).
    args: Vec<String>,
    /// Keep printing new lines.
    #[arg(short, long)]
    follow: bool,
    /// Only lines newer than this (e.g. 30s, 5m, 2h).
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Print each line's timestamp.
    #[arg(short, long)]
    timestamps: bool,
}

/// Arguments of `landscape scale`.
#[derive(clap::Args)]
pub struct ScaleArgs {
    /// `[DIR] SERVICE=N...`
    #[arg(required = true)]
    args: Vec<String>,
}

/// Arguments of `landscape restart`.
#[derive(clap::Args)]
pub struct RestartArgs {
    /// `[DIR] [SERVICE...]` (no service: all).
    args: Vec<String>,
}

/// Arguments of `landscape down`.
#[derive(clap::Args)]
pub struct DownArgs {
    /// The landscape directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Also remove the data of its Managed Services (databases, caches): each provider
    /// deprovisions its service. Without it the data stays for the next `up`.
    #[arg(long, short = 'v')]
    volumes: bool,
}

fn fail(cmd: &str, code: u8, msg: &str) -> ExitCode {
    eprintln!("landscape {cmd}: {msg}");
    ExitCode::from(code)
}

/// Splits `[DIR] WORDS...`: the first word is the directory when it holds a ci.yml (or
/// is one).
fn dir_and_rest(args: &[String]) -> (PathBuf, Vec<String>) {
    // (A word with a `/` cannot be a service name: a directory, even one that is not
    // there, which is then the error.)
    let names_landscape = |w: &str| {
        let p = Path::new(w);
        p.join("ci.yml").is_file()
            || (p.file_name() == Some("ci.yml".as_ref()) && p.is_file())
            || w.contains('/')
            || w == "."
            || w == ".."
    };
    match args.first() {
        Some(first) if names_landscape(first) => (PathBuf::from(first), args[1..].to_vec()),
        _ => (PathBuf::from("."), args.to_vec()),
    }
}

/// The running landscape of `dir`: its name, state directory and control socket, or the
/// "not running" message.
fn running(cmd: &str, dir: &Path) -> Result<(String, PathBuf, PathBuf), ExitCode> {
    let dir = crate::up::landscape_dir(dir).map_err(|e| fail(cmd, 2, &e))?;
    let (name, state, sock) = locate(&dir).map_err(|e| fail(cmd, 2, &e))?;
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        return Ok((name, state, sock));
    }
    let why = if let Some(pid) = crate::up::lock_holder(&state) {
        format!(
            "{name} is still starting (or stopping) in `landscape up` pid {pid}; try again once it says it is ready"
        )
    } else if landscape::compose::Landscape::has_record(&state) {
        format!(
            "the control process of {name} has ended, but its replicas still run; `landscape up -d {}` takes them over, `landscape down {0}` stops them",
            dir.display()
        )
    } else {
        format!(
            "no landscape is running for {} (no control process at {}); start it with `landscape up -d {0}`",
            dir.display(),
            sock.display()
        )
    };
    Err(fail(cmd, 1, &why))
}

fn rt() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("", 2, &format!("cannot start the async runtime: {e}")))
}

fn call(
    cmd: &str,
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ExitCode> {
    let rt = rt()?;
    match rt.block_on(landscape::control::call(sock, method, path, body.as_ref())) {
        Ok((200, v)) => Ok(v),
        Ok((_, v)) => Err(fail(cmd, 1, v["error"].as_str().unwrap_or("refused"))),
        Err(e) => Err(fail(
            cmd,
            2,
            &format!("control process at {}: {e}", sock.display()),
        )),
    }
}

/// `landscape ps`.
pub fn ps(a: PsArgs) -> ExitCode {
    let (_, _, sock) = match running("ps", &a.dir) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let v = match call("ps", &sock, "GET", "/v1/status", None) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let mut replicas = v["replicas"].as_array().cloned().unwrap_or_default();
    if a.stats {
        let sample = || -> Result<Vec<serde_json::Value>, ExitCode> {
            Ok(call("ps", &sock, "GET", "/v1/stats", None)?
                .as_array()
                .cloned()
                .unwrap_or_default())
        };
        let first = match sample() {
            Ok(s) => s,
            Err(c) => return c,
        };
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let second = match sample() {
            Ok(s) => s,
            Err(c) => return c,
        };
        let dt = t0.elapsed().as_secs_f64();
        let key = |u: &serde_json::Value| (u["service"].clone(), u["replica"].clone());
        for r in replicas.iter_mut() {
            let k = (r["service"].clone(), r["replica"].clone());
            let now = second.iter().find(|u| key(u) == k);
            let before = first.iter().find(|u| key(u) == k);
            if let (Some(n), Some(b)) = (now, before) {
                let cpu = |u: &serde_json::Value| u["usage"]["cpu_time_ns"].as_f64().unwrap_or(0.0);
                let pct = ((cpu(n) - cpu(b)) / 1e9 / dt * 100.0).max(0.0);
                r["cpu_percent"] = serde_json::json!((pct * 10.0).round() / 10.0);
                r["memory_bytes"] = n["usage"]["memory_current"].clone();
                r["processes"] = n["usage"]["pids_current"].clone();
            }
        }
    }
    let mut keys = vec![
        "service",
        "replica",
        "state",
        "pid",
        "address",
        "restarts",
        "uptime_s",
        "last_exit",
    ];
    if a.stats {
        keys.extend(["cpu_percent", "memory_bytes", "processes"]);
    }
    if a.format == "json" {
        let rows: Vec<serde_json::Value> = replicas
            .iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                for k in &keys {
                    o.insert(k.to_string(), r[*k].clone());
                }
                serde_json::Value::Object(o)
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return ExitCode::SUCCESS;
    }
    let mut out = std::io::stdout().lock();
    let stats_head = if a.stats {
        "   CPU%     MEM  PROCS"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{:<16} {:>3} {:<10} {:>8} {:<15} {:>8} {:>9}{stats_head}  LAST EXIT",
        "SERVICE", "#", "STATE", "PID", "ADDRESS", "RESTARTS", "UPTIME"
    );
    for r in &replicas {
        let text = |k: &str| match &r[k] {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let uptime = r["uptime_s"]
            .as_f64()
            .map(|s| format!("{s:.0}s"))
            .unwrap_or_else(|| "-".into());
        let stats = if a.stats {
            match (r["cpu_percent"].as_f64(), r["memory_bytes"].as_f64()) {
                (Some(c), Some(m)) => {
                    format!(" {c:>6.1} {:>6.1}M {:>6}", m / 1048576.0, text("processes"))
                }
                _ => format!(" {:>6} {:>7} {:>6}", "-", "-", "-"),
            }
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:<16} {:>3} {:<10} {:>8} {:<15} {:>8} {:>9}{stats}  {}",
            text("service"),
            text("replica"),
            text("state"),
            text("pid"),
            text("address"),
            text("restarts"),
            uptime,
            text("last_exit")
        );
    }
    ExitCode::SUCCESS
}

/// Parses `30s`, `5m`, `2h`, `1d`, `500ms` (or plain seconds).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n * ms))
}

/// `landscape logs`.
pub fn logs(a: LogsArgs) -> ExitCode {
    let (dir, services) = dir_and_rest(&a.args);
    let (_, state, sock) = match running("logs", &dir) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let since = match a.since.as_deref().map(|s| (s, parse_duration(s))) {
        None => None,
        Some((_, Some(d))) => Some(landscape::runtime::logs::rfc3339(
            std::time::SystemTime::now() - d,
        )),
        Some((s, None)) => {
            return fail(
                "logs",
                2,
                &format!("--since {s:?}: use a number with s, m, h or d (e.g. 30s, 5m)"),
            )
        }
    };
    let wanted = |replica: &str| {
        services.is_empty()
            || services.iter().any(|s| {
                replica == s
                    || replica
                        .rsplit_once('-')
                        .is_some_and(|(svc, n)| svc == s && n.parse::<u32>().is_ok())
            })
    };
    if let Ok(status) = call("logs", &sock, "GET", "/v1/status", None) {
        let known: Vec<&str> = status["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["service"].as_str())
            .collect();
        for s in &services {
            if !known.iter().any(|k| k == s) && !s.contains('-') {
                return fail("logs", 1, &format!("no service {s:?} in this landscape"));
            }
        }
    }
    // Every file of every replica (the current and the rotated ones), merged by time.
    let mut lines: Vec<(String, String, String)> = Vec::new();
    let logs_dir = state.join("logs");
    for entry in std::fs::read_dir(&logs_dir).into_iter().flatten().flatten() {
        let replica = entry.file_name().to_string_lossy().into_owned();
        if !wanted(&replica) {
            continue;
        }
        // Oldest file first (rotated files are older the higher their number), so that
        // lines stamped with the same millisecond keep the order they were written in.
        let mut files: Vec<(std::time::SystemTime, std::cmp::Reverse<u32>, PathBuf)> =
            std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|f| {
                    let path = f.path();
                    let mtime = f
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    let n = path
                        .extension()
                        .and_then(|e| e.to_str())
                        .and_then(|e| e.parse().ok())
                        .unwrap_or(0);
                    (mtime, std::cmp::Reverse(n), path)
                })
                .collect();
        files.sort();
        for (_, _, f) in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            for l in text
                .lines()
                .filter_map(landscape::runtime::logs::parse_line)
            {
                if since.as_ref().is_some_and(|s| l.timestamp < *s) {
                    continue;
                }
                lines.push((l.timestamp, replica.clone(), l.text));
            }
        }
    }
    // Stable: by time and replica only, each replica's lines in their written order.
    lines.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut out = std::io::stdout().lock();
    let show = |out: &mut std::io::StdoutLock, ts: &str, who: &str, text: &str| {
        if a.timestamps {
            let _ = writeln!(out, "{who:>10} | {ts} {text}");
        } else {
            let _ = writeln!(out, "{who:>10} | {text}");
        }
    };
    let mut last = String::new();
    for (ts, who, text) in &lines {
        show(&mut out, ts, who, text);
        last.clone_from(ts);
    }
    let _ = out.flush();
    drop(out);
    if !a.follow {
        return ExitCode::SUCCESS;
    }
    let rt = match rt() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async {
        let mut stream = match landscape::control::lines(&sock, "/v1/events").await {
            Ok(s) => s,
            Err(e) => return fail("logs", 2, &format!("follow: {e}")),
        };
        while let Ok(Some(line)) = stream.next_line().await {
            let Ok(ev) = serde_json::from_str::<landscape::runtime::Event>(&line) else {
                continue;
            };
            if let landscape::runtime::EventKind::Log {
                service,
                replica,
                line,
            } = ev.kind
            {
                let who = format!("{service}-{replica}");
                if wanted(&who) && line.timestamp >= last {
                    let mut out = std::io::stdout().lock();
                    show(&mut out, &line.timestamp, &who, &line.text);
                    let _ = out.flush();
                }
            }
        }
        ExitCode::SUCCESS
    })
}

/// `landscape scale`.
pub fn scale(a: ScaleArgs) -> ExitCode {
    let (dir, specs) = dir_and_rest(&a.args);
    let mut wanted = Vec::new();
    for s in &specs {
        match s.split_once('=').map(|(k, v)| (k, v.parse::<u32>())) {
            Some((k, Ok(_))) if wanted.iter().any(|(w, _)| w == k) => {
                return fail(
                    "scale",
                    2,
                    &format!("{k:?} is given twice; give each service one count"),
                )
            }
            Some((k, Ok(n))) if !k.is_empty() => wanted.push((k.to_string(), n)),
            _ => {
                return fail(
                    "scale",
                    2,
                    &format!("{s:?}: expected SERVICE=N (e.g. api=3)"),
                )
            }
        }
    }
    if wanted.is_empty() {
        return fail("scale", 2, "give SERVICE=N (e.g. `landscape scale api=3`)");
    }
    let (_, _, sock) = match running("scale", &dir) {
        Ok(v) => v,
        Err(c) => return c,
    };
    for (service, n) in wanted {
        let body = serde_json::json!({ "service": service, "replicas": n });
        if let Err(c) = call("scale", &sock, "POST", "/v1/scale", Some(body)) {
            return c;
        }
        println!("landscape scale: {service} = {n}");
    }
    ExitCode::SUCCESS
}

/// `landscape restart`.
pub fn restart(a: RestartArgs) -> ExitCode {
    let (dir, services) = dir_and_rest(&a.args);
    let (_, _, sock) = match running("restart", &dir) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let body = serde_json::json!({ "services": services });
    match call("restart", &sock, "POST", "/v1/restart", Some(body)) {
        Ok(_) => {
            println!(
                "landscape restart: restarted {}",
                if services.is_empty() {
                    "every service".to_string()
                } else {
                    services.join(", ")
                }
            );
            ExitCode::SUCCESS
        }
        Err(c) => c,
    }
}

/// `landscape down`.
pub fn down(a: DownArgs) -> ExitCode {
    let dir = match crate::up::landscape_dir(&a.dir) {
        Ok(d) => d,
        Err(e) => return fail("down", 2, &e),
    };
    let (name, state, sock) = match locate(&dir) {
        Ok(l) => l,
        Err(e) => return fail("down", 2, &e),
    };
    let live = std::os::unix::net::UnixStream::connect(&sock).is_ok();
    if !live {
        // Still starting (no control socket yet): that `up` stops everything it started
        // on SIGTERM; wait until it has let go of the state.
        if let Some(pid) = crate::up::lock_holder(&state).filter(|p| *p > 0) {
            eprintln!("landscape down: {name} is still starting (pid {pid}); stopping it");
            // SAFETY: kill with a pid read from the lock file its holder wrote.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while crate::up::lock_holder(&state).is_some() {
                if std::time::Instant::now() > deadline {
                    return fail(
                        "down",
                        1,
                        &format!("{name}: `landscape up` pid {pid} has not stopped after 120 s"),
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            println!("landscape down: {name} stopped");
            return remove_volumes(&a, &dir, &name);
        }
    }
    if !live && landscape::compose::Landscape::has_record(&state) {
        // Its control process was killed: take the replicas over first, then stop them.
        eprintln!(
            "landscape down: {name} has no control process; taking its replicas over to stop them"
        );
        // Its output (`up`'s start-up lines) is shown only when the take-over fails.
        let adopted = std::env::current_exe().and_then(|exe| {
            std::process::Command::new(exe)
                .arg("up")
                .arg("-d")
                .arg(&dir)
                .stdin(std::process::Stdio::null())
                .output()
        });
        match adopted {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprint!("{}", String::from_utf8_lossy(&o.stderr));
                return fail(
                    "down",
                    1,
                    &format!("{name}: could not take over its replicas to stop them"),
                );
            }
            Err(e) => {
                return fail(
                    "down",
                    1,
                    &format!("{name}: could not take over its replicas: {e}"),
                )
            }
        }
    }
    if std::os::unix::net::UnixStream::connect(&sock).is_err() {
        println!("landscape down: {name} is not running");
        return remove_volumes(&a, &dir, &name);
    }
    let pid = match call("down", &sock, "GET", "/v1/status", None) {
        Ok(v) => v["control_pid"].as_u64().unwrap_or(0) as i32,
        Err(c) => return c,
    };
    if let Err(c) = call("down", &sock, "POST", "/v1/down", None) {
        return c;
    }
    // The control process stops every replica (in parallel), removes the network and
    // its state directory, then exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while pid > 0 && Path::new(&format!("/proc/{pid}")).exists() {
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if zombie {
            break;
        }
        if std::time::Instant::now() > deadline {
            return fail(
                "down",
                1,
                &format!("{name}: the control process {pid} has not exited after 120 s"),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&state);
    println!("landscape down: {name} stopped");
    remove_volumes(&a, &dir, &name)
}

/// `down --volumes`: the Managed Services' data, once nothing runs.
fn remove_volumes(a: &DownArgs, dir: &Path, name: &str) -> ExitCode {
    if !a.volumes {
        return ExitCode::SUCCESS;
    }
    let loaded = match crate::up::load(dir, &mut std::io::stderr()) {
        Ok(l) => l,
        Err((code, msg)) => return fail("down", code, &format!("--volumes: {msg}")),
    };
    let runtime = match landscape::runtime::Runtime::with_defaults() {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => return fail("down", 2, &e.to_string()),
    };
    let state = match locate(dir) {
        Ok((_, state, _)) => state,
        Err(e) => return fail("down", 2, &e),
    };
    let opts = landscape::compose::UpOptions::new(name, dir.to_path_buf(), state);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail("down", 2, &format!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(landscape::compose::deprovision(
        runtime,
        &loaded.model,
        &opts,
    )) {
        Ok(gone) if gone.is_empty() => {
            println!("landscape down: {name} has no managed-service data");
            ExitCode::SUCCESS
        }
        Ok(gone) => {
            println!(
                "landscape down: removed the data of {} ({})",
                gone.join(", "),
                opts.data_dir.display()
            );
            let _ = std::fs::remove_dir(&opts.data_dir);
            ExitCode::SUCCESS
        }
        Err(e) => fail("down", 1, &format!("--volumes: {e}")),
    }
}
