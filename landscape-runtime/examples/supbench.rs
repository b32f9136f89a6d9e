//! What supervision costs: `supbench MODE [ROUNDS]` prints machine-readable `key=value`
//! lines, medians over the rounds. `benches/supervise.sh` runs both modes.
//!
//! * `crash` (default 50 rounds): a replica's command (`sleep 1000`, no probe, restart
//!   backoff 1 ms) is killed with SIGKILL; timed until the supervisor reports the exit
//!   (`ReplicaExited`: detection — pidfd/reaping, no polling) and until the replica is
//!   running again (`ReplicaReady`). Comparison point: the same kill of a plain child
//!   process of this program and its `waitpid`.
//! * `adopt` (default 3 rounds): a host process (this program, re-executed) supervises 50
//!   durable replicas with records and is killed with SIGKILL; timed from
//!   [`Supervisor::adopt`] in this process until every replica is ready again under it (the
//!   same processes). Comparison point: the cold start of the same 50 replicas by the
//!   killed host (start until every replica is ready).
//!
//! Everything it starts is ended: the supervisors shut down (instances, network), the
//! killed host's replicas by the adopting supervisor, temporary directories removed.

mod common;
use common::{load, median, ms};
use landscape_runtime::supervisor::{EventKind, ReplicaState};
use landscape_runtime::{Backoff, Process, Runtime, ServiceDef, Supervisor, SupervisorConfig};
use landscape_runtime::{InstanceSpec, ProbeConfig};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Res<T> = std::result::Result<T, String>;

const USAGE: &str = "usage: supbench crash|adopt [ROUNDS]";
const HOST_ENV: &str = "SUPBENCH_ADOPT_HOST";
const REPLICAS: u32 = 50;

fn main() -> ExitCode {
    landscape_runtime::init();
    if let Some(dir) = std::env::var_os(HOST_ENV) {
        return match host(Path::new(&dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("supbench host: {e}");
                ExitCode::from(1)
            }
        };
    }
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let rounds = match args.next().map(|r| r.parse::<usize>()) {
        None => None,
        Some(Ok(n)) if (1..=10_000).contains(&n) => Some(n),
        Some(_) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let r = match mode.as_str() {
        "crash" => crash(rounds.unwrap_or(50)),
        "adopt" => adopt(rounds.unwrap_or(3)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("supbench {mode}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Removes a directory when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Res<TempDir> {
        let p = std::env::temp_dir().join(format!("supbench-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sleeper(name: &str, replicas: u32) -> ServiceDef {
    ServiceDef {
        name: name.into(),
        replicas,
        spec: InstanceSpec::new(name, Process::argv(["sleep", "1000"])),
        ports: Vec::new(),
        probe: None,
    }
}

fn config(name: &str, dir: &Path) -> SupervisorConfig {
    let mut cfg = SupervisorConfig::new(name, dir.join("app"), dir.join("logs"));
    // Every crash restarts after 1 ms (no growing backoff, no crash loop).
    cfg.backoff = Backoff {
        initial: Duration::from_millis(1),
        reset_after: Duration::from_millis(1),
        crash_loop_after: u32::MAX,
        ..Backoff::default()
    };
    cfg.probes = ProbeConfig::default();
    cfg.stop_grace = Duration::from_secs(2);
    cfg
}

fn all_ready(sup: &Supervisor, n: usize) -> bool {
    let st = sup.status();
    st.replicas.len() == n && st.replicas.iter().all(|r| r.state == ReplicaState::Ready)
}

fn wait_all_ready(sup: &Supervisor, n: usize, limit: Duration) -> Res<()> {
    let deadline = Instant::now() + limit;
    // Checked every millisecond: the resolution of the figures that end here.
    while !all_ready(sup, n) {
        if Instant::now() > deadline {
            return Err(format!("not all {n} replicas ready: {:?}", sup.status()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// The command process of an instance whose init is `init`.
fn command_of(init: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn crash(rounds: usize) -> Res<()> {
    let rt = Arc::new(Runtime::with_defaults().map_err(|e| format!("runtime: {e}"))?);
    let dir = TempDir::new("crash")?;
    std::fs::create_dir_all(dir.0.join("app")).map_err(|e| e.to_string())?;
    let sup = Supervisor::new(
        rt,
        config(&format!("sb{}-crash", std::process::id()), &dir.0),
    )
    .map_err(|e| format!("supervisor: {e}"))?;
    sup.start(vec![sleeper("c", 1)])
        .map_err(|e| e.to_string())?;
    wait_all_ready(&sup, 1, Duration::from_secs(20))?;
    let (mut detect, mut restart, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds + 3 {
        let init = sup.status().replicas[0].pid.ok_or("no pid")?;
        let cmd = {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(c) = command_of(init) {
                    break c;
                }
                if Instant::now() > deadline {
                    return Err("the replica's command did not appear".into());
                }
                std::thread::yield_now();
            }
        };
        let mut events = sup.subscribe();
        let t = Instant::now();
        kill9(cmd)?;
        let mut exited = None;
        let ready;
        loop {
            match events.blocking_recv() {
                Ok(ev) => match ev.kind {
                    EventKind::ReplicaExited { .. } if exited.is_none() => {
                        exited = Some(t.elapsed())
                    }
                    EventKind::ReplicaReady { .. } if exited.is_some() => {
                        ready = t.elapsed();
                        break;
                    }
                    _ => {}
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => return Err(format!("events: {e}")),
            }
        }
        // The floor: a plain child of this process, killed and reaped.
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .map_err(|e| format!("sleep: {e}"))?;
        let t = Instant::now();
        child.kill().map_err(|e| e.to_string())?;
        child.wait().map_err(|e| e.to_string())?;
        let f = t.elapsed();
        if round >= 3 {
            detect.push(ms(exited.unwrap_or_default()));
            restart.push(ms(ready));
            floor.push(ms(f));
        }
    }
    let (d, r, f) = (
        median(&mut detect),
        median(&mut restart),
        median(&mut floor),
    );
    println!("crash_rounds={rounds}");
    println!("crash_detect_p50_ms={d:.3}");
    println!("crash_back_ready_p50_ms={r:.3}");
    println!("crash_floor_kill_wait_p50_ms={f:.3}");
    println!("crash_detect_added_ms={:.3}", d - f);
    println!("crash_load={}", load());
    sup.shutdown();
    Ok(())
}

/// SIGKILL to `pid` (a process this program did not start), by the syscall.
fn kill9(pid: i32) -> Res<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("kill -KILL {pid}: {e}"))
}

/// SIGKILL to every other process running this program (the helpers and network holder
/// of a killed host whose replicas could not be adopted; their instances die with them).
fn kill_leftovers(exe: &Path) {
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if std::fs::read_link(e.path().join("exe")).is_ok_and(|x| x == exe) {
            if let Ok(p) = pid.parse::<i32>() {
                let _ = kill9(p);
            }
        }
    }
}

/// The killed host: supervises REPLICAS durable replicas with records in `dir`, prints
/// `ready MS` (its cold start) and waits to be killed.
fn host(dir: &Path) -> Res<()> {
    let rt = Arc::new(Runtime::with_defaults().map_err(|e| format!("runtime: {e}"))?);
    let name = std::fs::read_to_string(dir.join("name")).map_err(|e| e.to_string())?;
    let mut cfg = config(name.trim(), dir);
    cfg.records = Some(dir.join("records.json"));
    let sup = Supervisor::new(rt, cfg).map_err(|e| format!("supervisor: {e}"))?;
    let t = Instant::now();
    sup.start(vec![sleeper("a", REPLICAS)])
        .map_err(|e| e.to_string())?;
    wait_all_ready(&sup, REPLICAS as usize, Duration::from_secs(60))?;
    println!("ready {:.3}", ms(t.elapsed()));
    // Killed here.
    loop {
        std::thread::park();
    }
}

fn adopt(rounds: usize) -> Res<()> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (mut adopt, mut cold) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let dir = TempDir::new(&format!("adopt{round}"))?;
        std::fs::create_dir_all(dir.0.join("app")).map_err(|e| e.to_string())?;
        let name = format!("sb{}-a{round}", std::process::id());
        std::fs::write(dir.0.join("name"), &name).map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(&exe)
            .env(HOST_ENV, &dir.0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("start the host: {e}"))?;
        let mut line = String::new();
        let out = child.stdout.take().ok_or("no stdout")?;
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let cold_ms: f64 = match line.trim().strip_prefix("ready ") {
            Some(v) => v.parse().map_err(|_| format!("host said {line:?}"))?,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the host did not come up: {line:?}"));
            }
        };
        child.kill().map_err(|e| e.to_string())?;
        child.wait().map_err(|e| e.to_string())?;
        let rt = Arc::new(Runtime::with_defaults().map_err(|e| format!("runtime: {e}"))?);
        let mut cfg = config(&name, &dir.0);
        cfg.records = Some(dir.0.join("records.json"));
        let t = Instant::now();
        let (sup, report) = match Supervisor::adopt(rt, cfg, vec![sleeper("a", REPLICAS)]) {
            Ok(r) => r,
            Err(e) => {
                // Nobody supervises the killed host's replicas now: end them.
                kill_leftovers(&exe);
                return Err(format!("adopt: {e}"));
            }
        };
        wait_all_ready(&sup, REPLICAS as usize, Duration::from_secs(60))?;
        let took = ms(t.elapsed());
        if report.adopted.len() != REPLICAS as usize {
            sup.shutdown();
            return Err(format!(
                "adopted {} of {REPLICAS} (restarted {:?})",
                report.adopted.len(),
                report.restarted
            ));
        }
        sup.shutdown();
        adopt.push(took);
        cold.push(cold_ms);
    }
    let (a, c) = (median(&mut adopt), median(&mut cold));
    println!("adopt_rounds={rounds}");
    println!("adopt_replicas={REPLICAS}");
    println!("adopt_p50_ms={a:.3}");
    println!("adopt_cold_start_p50_ms={c:.3}");
    println!("adopt_per_replica_ms={:.3}", a / f64::from(REPLICAS));
    println!("ratio={:.3}", a / c);
    println!("adopt_load={}", load());
    Ok(())
}
