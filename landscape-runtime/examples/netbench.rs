//! What the landscape network costs: `netbench MODE [ROUNDS]` (default 200 rounds) prints
//! machine-readable `key=value` lines, one figure per line, medians over interleaved rounds
//! (plain and networked alternate, and swap order every round). `benches/net-attach.sh`
//! runs all three modes.
//!
//! * `start`: cold start + wait of `/bin/true` through [`Runtime::spawn`] without a network
//!   and attached to one network (created up front; an address allocated and released per
//!   round). Target: the network adds under 1 ms.
//! * `attach`: the time to start (spawn until it returns) and to stop (stop until the exit
//!   is reported: the helper removes the veth pair first) one `sleep 1000` instance, per
//!   instance, with 1 and with 50 instances running at once, with and without a network.
//!   The 50-instance shape runs `max(2, ROUNDS / 20)` rounds of 50 instances per variant.
//! * `connect`: connect + `GET / HTTP/1.0` + read to end from the host through the
//!   network's sockets ([`Network::connect`]) to an attached instance's `busybox httpd`,
//!   against the same through plain loopback to a `busybox httpd` the program starts on the
//!   host on 127.0.0.1. Target: ratio ≤ 1.10.
//!
//! * `pool`: the hand-out of a parked instance ([`Runtime::park`], then
//!   [`landscape_runtime::Parked::assign`] until the command has been exec'd) against a
//!   cold [`Runtime::spawn`] of the same attached `sleep 1000` (both until they return with
//!   the command running). Target: hand-out ≤ 1 ms.
//!
//! * `cold`: the cold start as a host sees it: [`Runtime::spawn`] + wait of `/bin/true`
//!   with every namespace, an overlay root over a busybox root filesystem (`ROOTFS`, env
//!   `NETBENCH_ROOTFS`, default the host's), the app directory bound and attached to a
//!   network, against the fork + exec floor: `std::process::Command` + wait of the same
//!   binary on the host, from the same process. Target: ≤ 2× the floor.
//!
//! * `ns`: what each namespace costs the kernel alone, without the runtime: a raw
//!   `clone(flags)` whose child exits at once, + `waitpid`, for no new namespace, a user
//!   namespace alone and with each other kind, every kind, and every kind but the network
//!   (`ns_<set>_p50_ms`; `ns_network_ms` = every kind − every kind but the network). The
//!   sets are interleaved, rotating their order every round.
//!
//! Everything it starts is ended on every path: instances and the network by their
//! `Drop`, the host httpd and the temporary docroot by guards; SIGINT, SIGTERM and SIGHUP
//! run the same clean-up (the network's holder would otherwise outlive this process, by
//! design). Traffic goes only to 127.0.0.1 and to addresses inside the network this program
//! creates.

mod common;
use common::{load, median, ms, quantile};
use landscape_runtime::{Instance, InstanceSpec, Network, NetworkConfig, Output, Process, Runtime};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: netbench start|attach|connect|pool|cold|ns [ROUNDS]";

fn main() -> ExitCode {
    landscape_runtime::init();
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let rounds = match args.next().map(|r| r.parse::<usize>()) {
        None => 200,
        Some(Ok(n)) if (1..=100_000).contains(&n) => n,
        Some(_) => {
            eprintln!("netbench: ROUNDS must be a number from 1 to 100000; {USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = cleanup::install() {
        eprintln!("netbench: {e}");
        return ExitCode::from(2);
    }
    let result = match mode.as_str() {
        "start" => start(rounds),
        "attach" => attach(rounds),
        "connect" => connect(rounds),
        "pool" => pool(rounds),
        "cold" => cold(rounds),
        "ns" => ns(rounds),
        other => {
            eprintln!("netbench: unknown mode {other:?}; {USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netbench {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = std::result::Result<T, String>;

/// Clean-up on SIGINT/SIGTERM/SIGHUP: the signals are blocked in every thread and taken by
/// one waiting thread, which runs the registered actions and exits. Instances need none:
/// their helpers kill them when this process goes away.
mod cleanup {
    use nix::sys::signal::{SigSet, Signal};
    use std::sync::Mutex;

    type Action = Box<dyn FnOnce() + Send>;
    static ACTIONS: Mutex<Vec<(u64, Action)>> = Mutex::new(Vec::new());
    static NEXT: Mutex<u64> = Mutex::new(0);

    pub fn install() -> Result<(), String> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        // Before any other thread exists, so that every later thread inherits the mask.
        // (Child processes do not: std resets the mask before exec.)
        set.thread_block()
            .map_err(|e| format!("block termination signals: {e}"))?;
        std::thread::Builder::new()
            .name("netbench-signals".into())
            .spawn(move || {
                let sig = set.wait().ok();
                eprintln!("netbench: {sig:?}: cleaning up");
                let actions = std::mem::take(&mut *lock(&ACTIONS));
                for (_, a) in actions.into_iter().rev() {
                    a();
                }
                std::process::exit(130);
            })
            .map(drop)
            .map_err(|e| format!("start the signal thread: {e}"))
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `action` if a termination signal arrives while the returned guard lives.
    pub fn on_signal(action: impl FnOnce() + Send + 'static) -> Registered {
        let id = {
            let mut n = lock(&NEXT);
            *n += 1;
            *n
        };
        lock(&ACTIONS).push((id, Box::new(action)));
        Registered(id)
    }

    pub struct Registered(u64);

    impl Drop for Registered {
        fn drop(&mut self) {
            lock(&ACTIONS).retain(|(id, _)| *id != self.0);
        }
    }
}

/// A network that is shut down on drop and on a termination signal.
struct Net {
    net: Arc<Network>,
    _sig: cleanup::Registered,
}

impl Net {
    fn create(rt: &Runtime, mode: &str) -> Res<Net> {
        let name = format!("nb{}-{mode}", std::process::id());
        let net = Arc::new(
            Network::create(rt, NetworkConfig::new(name.clone()))
                .map_err(|e| format!("create network {name}: {e}"))?,
        );
        let weak = Arc::downgrade(&net);
        let sig = cleanup::on_signal(move || {
            if let Some(n) = weak.upgrade() {
                n.shutdown();
            }
        });
        Ok(Net { net, _sig: sig })
    }
}

impl std::ops::Deref for Net {
    type Target = Network;
    fn deref(&self) -> &Network {
        &self.net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.net.shutdown();
    }
}

/// An attached instance whose address goes back to the network when it is dropped (after
/// the instance: `Instance`'s own drop kills and waits for it).
struct Attached<'a> {
    inst: Option<Instance>,
    net: &'a Network,
    addr: Ipv4Addr,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        drop(self.inst.take());
        self.net.release(self.addr);
    }
}

/// Starts `process` attached to `net` at a fresh address.
fn spawn_attached<'a>(
    rt: &Runtime,
    net: &'a Network,
    name: &str,
    process: Process,
) -> Res<Attached<'a>> {
    let addr = net.allocate().map_err(|e| e.to_string())?;
    let mut att = Attached {
        inst: None,
        net,
        addr,
    };
    let mut spec = InstanceSpec::new(name, process);
    spec.network = Some(net.attachment(addr));
    att.inst = Some(
        rt.spawn(&spec, Output::Null)
            .map_err(|e| format!("spawn {name} at {addr}: {e}"))?,
    );
    Ok(att)
}

fn runtime() -> Res<Runtime> {
    Runtime::with_defaults().map_err(|e| format!("runtime: {e}"))
}

/// Mode `start`: spawn + wait of `/bin/true`, plain against attached.
fn start(rounds: usize) -> Res<()> {
    let rt = runtime()?;
    let net = Net::create(&rt, "start")?;
    let plain_spec = InstanceSpec::new("nb-plain", Process::argv(["/bin/true"]));
    // Each run returns (spawn returned, spawn + wait done); the first is a breakdown only.
    let run_plain = || -> Res<(f64, f64)> {
        let t = Instant::now();
        let mut inst = rt
            .spawn(&plain_spec, Output::Null)
            .map_err(|e| format!("plain /bin/true: {e}"))?;
        let spawned = ms(t.elapsed());
        let exit = inst.wait().map_err(|e| format!("plain /bin/true: {e}"))?;
        let done = ms(t.elapsed());
        if !exit.success() {
            return Err(format!("plain /bin/true failed: {exit:?}"));
        }
        Ok((spawned, done))
    };
    let run_net = || -> Res<(f64, f64)> {
        // Timed from allocate to release: all that running an attached instance takes.
        let t = Instant::now();
        let mut att = spawn_attached(&rt, &net, "nb-net", Process::argv(["/bin/true"]))?;
        let spawned = ms(t.elapsed());
        let exit = att
            .inst
            .as_mut()
            .ok_or("no instance")?
            .wait()
            .map_err(|e| format!("attached /bin/true: {e}"))?;
        drop(att);
        let done = ms(t.elapsed());
        if !exit.success() {
            return Err(format!("attached /bin/true failed: {exit:?}"));
        }
        Ok((spawned, done))
    };
    // Warm-up (page cache, the fork server, the holder's first veth).
    for _ in 0..5 {
        run_plain()?;
        run_net()?;
    }
    let (mut plain, mut netted) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        if i % 2 == 0 {
            plain.push(run_plain()?);
            netted.push(run_net()?);
        } else {
            netted.push(run_net()?);
            plain.push(run_plain()?);
        }
    }
    let (mut plain_spawn, mut plain_all): (Vec<f64>, Vec<f64>) = plain.into_iter().unzip();
    let (mut net_spawn, mut net_all): (Vec<f64>, Vec<f64>) = netted.into_iter().unzip();
    let (p, n) = (median(&mut plain_all), median(&mut net_all));
    println!("start_rounds={rounds}");
    println!("start_plain_p50_ms={p:.3}");
    println!("start_net_p50_ms={n:.3}");
    println!("start_plain_p90_ms={:.3}", quantile(&mut plain_all, 0.9));
    println!("start_net_p90_ms={:.3}", quantile(&mut net_all, 0.9));
    // Breakdown: until `spawn` returned (the command runs, attached), the rest is the
    // instance's run, its exit and (attached) the removal of its veth pair.
    println!("start_plain_spawn_p50_ms={:.3}", median(&mut plain_spawn));
    println!("start_net_spawn_p50_ms={:.3}", median(&mut net_spawn));
    println!("net_added_ms={:.3}", n - p);
    println!("ratio={:.3}", n / p);
    println!("start_load={}", load());
    Ok(())
}

/// Mode `cold`: spawn + wait of `/bin/true` in a full instance (overlay root, app
/// directory, network) against fork + exec + wait of the same binary on the host.
fn cold(rounds: usize) -> Res<()> {
    let rt = runtime()?;
    let net = Net::create(&rt, "cold")?;
    let tmp = TempDir::new()?;
    let app = tmp.path.join("app");
    std::fs::create_dir(&app).map_err(|e| format!("create {}: {e}", app.display()))?;
    let rootfs = std::env::var_os("NETBENCH_ROOTFS").map(PathBuf::from);
    let host_true = match &rootfs {
        Some(r) => r.join("bin/true"),
        None => PathBuf::from("/bin/true"),
    };
    let spec_for = |net_addr: Option<Ipv4Addr>| {
        let mut spec = InstanceSpec::new("nb-cold", Process::argv(["/bin/true"]));
        if let Some(r) = &rootfs {
            spec.rootfs = landscape_runtime::Rootfs::Dir(r.clone());
        }
        spec.app_dir = Some(app.clone());
        spec.network = net_addr.map(|a| net.attachment(a));
        spec
    };
    let run_floor = || -> Res<f64> {
        let t = Instant::now();
        let st = std::process::Command::new(&host_true)
            .status()
            .map_err(|e| format!("{} on the host: {e}", host_true.display()))?;
        let d = ms(t.elapsed());
        if !st.success() {
            return Err(format!("{} on the host failed: {st}", host_true.display()));
        }
        Ok(d)
    };
    let run_inst = |attached: bool| -> Res<f64> {
        let t = Instant::now();
        let addr = if attached {
            Some(net.allocate().map_err(|e| e.to_string())?)
        } else {
            None
        };
        let exit = rt
            .spawn(&spec_for(addr), Output::Null)
            .and_then(|mut i| i.wait())
            .map_err(|e| format!("/bin/true in an instance: {e}"));
        if let Some(a) = addr {
            net.release(a);
        }
        let d = ms(t.elapsed());
        let exit = exit?;
        if !exit.success() {
            return Err(format!("/bin/true in an instance failed: {exit:?}"));
        }
        Ok(d)
    };
    for _ in 0..5 {
        run_floor()?;
        run_inst(false)?;
        run_inst(true)?;
    }
    let (mut floor, mut plain, mut netted) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        floor.push(run_floor()?);
        plain.push(run_inst(false)?);
        netted.push(run_inst(true)?);
    }
    let (f, p, n) = (median(&mut floor), median(&mut plain), median(&mut netted));
    println!("cold_rounds={rounds}");
    println!("cold_floor_p50_ms={f:.3}");
    println!("cold_instance_p50_ms={p:.3}");
    println!("cold_attached_p50_ms={n:.3}");
    println!("cold_instance_p90_ms={:.3}", quantile(&mut plain, 0.9));
    println!("cold_attached_p90_ms={:.3}", quantile(&mut netted, 0.9));
    println!("cold_instance_vs_floor={:.3}", p / f);
    println!("ratio={:.3}", n / f);
    println!("cold_load={}", load());
    Ok(())
}

/// Mode `ns`: raw clone + exit + wait per set of namespace flags.
fn ns(rounds: usize) -> Res<()> {
    use libc::{
        CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER,
        CLONE_NEWUTS,
    };
    let all = CLONE_NEWUSER
        | CLONE_NEWNS
        | CLONE_NEWPID
        | CLONE_NEWNET
        | CLONE_NEWIPC
        | CLONE_NEWUTS
        | CLONE_NEWCGROUP;
    let sets: [(&str, libc::c_int); 10] = [
        ("none", 0),
        ("user", CLONE_NEWUSER),
        ("user_mount", CLONE_NEWUSER | CLONE_NEWNS),
        ("user_pid", CLONE_NEWUSER | CLONE_NEWPID),
        ("user_ipc", CLONE_NEWUSER | CLONE_NEWIPC),
        ("user_uts", CLONE_NEWUSER | CLONE_NEWUTS),
        ("user_cgroup", CLONE_NEWUSER | CLONE_NEWCGROUP),
        ("user_network", CLONE_NEWUSER | CLONE_NEWNET),
        ("all", all),
        ("all_but_network", all & !CLONE_NEWNET),
    ];
    let once = |flags: libc::c_int| -> Res<f64> {
        let t = Instant::now();
        // SAFETY: a raw clone without CLONE_VM is a fork; the child only calls exit_group.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid == 0 {
            // SAFETY: the child exits at once, touching nothing.
            unsafe { libc::syscall(libc::SYS_exit_group, 0) };
        }
        if pid < 0 {
            return Err(format!(
                "clone({flags:#x}): {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut st = 0;
        // SAFETY: waits for the child just made.
        if unsafe { libc::waitpid(pid as libc::pid_t, &mut st, 0) } < 0 {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        Ok(ms(t.elapsed()))
    };
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); sets.len()];
    for round in 0..rounds + 5 {
        for k in 0..sets.len() {
            let i = (k + round) % sets.len();
            let d = once(sets[i].1)?;
            if round >= 5 {
                times[i].push(d);
            }
        }
    }
    let p50: Vec<f64> = times.iter_mut().map(|v| median(v)).collect();
    println!("ns_rounds={rounds}");
    for ((name, _), m) in sets.iter().zip(&p50) {
        println!("ns_{name}_p50_ms={m:.3}");
    }
    println!("ns_network_ms={:.3}", p50[8] - p50[9]);
    println!("ns_load={}", load());
    Ok(())
}

/// Mode `pool`: hand-out of a parked instance against a cold spawn (both attached).
fn pool(rounds: usize) -> Res<()> {
    let rt = runtime()?;
    let net = Net::create(&rt, "pool")?;
    let spec_at = |addr: Ipv4Addr, name: &str| {
        let mut spec = InstanceSpec::new(name, Process::argv(["sleep", "1000"]));
        spec.network = Some(net.attachment(addr));
        spec
    };
    let tmp = TempDir::new()?;
    let logs = tmp.path.join("logs");
    let one = |handout: &mut Vec<f64>, cold: &mut Vec<f64>| -> Res<()> {
        let a = net.allocate().map_err(|e| e.to_string())?;
        let b = net.allocate().map_err(|e| e.to_string())?;
        let parked = rt
            .park(&spec_at(a, "nb-pool"))
            .map_err(|e| format!("park: {e}"))?;
        let t = Instant::now();
        let pooled = parked
            .assign(
                &spec_at(a, "nb-handout"),
                landscape_runtime::LogConfig::new(&logs),
            )
            .map_err(|e| format!("assign: {e}"))?;
        handout.push(ms(t.elapsed()));
        let t = Instant::now();
        let spawned = rt
            .spawn(
                &spec_at(b, "nb-cold"),
                Output::Logs(landscape_runtime::LogConfig::new(&logs)),
            )
            .map_err(|e| format!("spawn: {e}"))?;
        cold.push(ms(t.elapsed()));
        drop((pooled, spawned));
        net.release(a);
        net.release(b);
        Ok(())
    };
    // The floor: fork + exec of the same command on the host (std's spawn returns once
    // the exec succeeded).
    let floor = |into: &mut Vec<f64>| -> Res<()> {
        let t = Instant::now();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .map_err(|e| format!("sleep on the host: {e}"))?;
        into.push(ms(t.elapsed()));
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    };
    let (mut h, mut c, mut f) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        one(&mut h, &mut c)?;
        floor(&mut f)?;
    }
    let (mut handout, mut cold, mut exec) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        one(&mut handout, &mut cold)?;
        floor(&mut exec)?;
    }
    let (hm, cm, fm) = (median(&mut handout), median(&mut cold), median(&mut exec));
    println!("pool_rounds={rounds}");
    println!("pool_handout_p50_ms={hm:.3}");
    println!("pool_handout_p90_ms={:.3}", quantile(&mut handout, 0.9));
    println!("pool_cold_spawn_p50_ms={cm:.3}");
    println!("pool_host_exec_p50_ms={fm:.3}");
    println!("handout_vs_exec={:.3}", hm / fm);
    println!("ratio={:.3}", hm / cm);
    println!("pool_load={}", load());
    Ok(())
}

/// Per-instance spawn and stop times of one batch.
#[derive(Default)]
struct Batch {
    spawn: Vec<f64>,
    stop: Vec<f64>,
}

/// Starts `n` `sleep 1000` instances (attached to `net` when given), timing each spawn,
/// then stops them one by one, timing each stop.
fn batch(rt: &Runtime, net: Option<&Network>, n: usize, into: &mut Batch) -> Res<()> {
    let sleep = || Process::argv(["sleep", "1000"]);
    let grace = Duration::from_secs(5);
    match net {
        None => {
            let spec = InstanceSpec::new("nb-sleep", sleep());
            let mut running = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let inst = rt
                    .spawn(&spec, Output::Null)
                    .map_err(|e| format!("spawn sleep: {e}"))?;
                into.spawn.push(ms(t.elapsed()));
                running.push(inst);
            }
            for mut inst in running {
                let t = Instant::now();
                inst.stop(grace).map_err(|e| format!("stop sleep: {e}"))?;
                into.stop.push(ms(t.elapsed()));
            }
        }
        Some(net) => {
            let mut running = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let att = spawn_attached(rt, net, "nb-sleep", sleep())?;
                into.spawn.push(ms(t.elapsed()));
                running.push(att);
            }
            for mut att in running {
                let t = Instant::now();
                if let Some(inst) = att.inst.as_mut() {
                    inst.stop(grace)
                        .map_err(|e| format!("stop attached sleep: {e}"))?;
                }
                drop(att);
                into.stop.push(ms(t.elapsed()));
            }
        }
    }
    Ok(())
}

/// Mode `attach`: start/stop cost per instance with 1 and 50 running at once.
fn attach(rounds: usize) -> Res<()> {
    let rt = runtime()?;
    let net = Net::create(&rt, "attach")?;
    // Warm-up.
    batch(&rt, None, 2, &mut Batch::default())?;
    batch(&rt, Some(&net), 2, &mut Batch::default())?;
    for (n, r) in [(1usize, rounds), (50, (rounds / 20).max(2))] {
        let (mut plain, mut netted) = (Batch::default(), Batch::default());
        for i in 0..r {
            if i % 2 == 0 {
                batch(&rt, None, n, &mut plain)?;
                batch(&rt, Some(&net), n, &mut netted)?;
            } else {
                batch(&rt, Some(&net), n, &mut netted)?;
                batch(&rt, None, n, &mut plain)?;
            }
        }
        let ps = median(&mut plain.spawn);
        let pt = median(&mut plain.stop);
        let ns = median(&mut netted.spawn);
        let nt = median(&mut netted.stop);
        println!("attach_n{n}_rounds={r}");
        println!("attach_n{n}_samples={}", plain.spawn.len());
        println!("attach_n{n}_plain_spawn_p50_ms={ps:.3}");
        println!("attach_n{n}_net_spawn_p50_ms={ns:.3}");
        println!("attach_n{n}_plain_stop_p50_ms={pt:.3}");
        println!("attach_n{n}_net_stop_p50_ms={nt:.3}");
        println!("attach_n{n}_spawn_added_ms={:.3}", ns - ps);
        println!("attach_n{n}_stop_added_ms={:.3}", nt - pt);
        println!("attach_n{n}_added_ms={:.3}", (ns + nt) - (ps + pt));
        println!("attach_n{n}_ratio={:.3}", (ns + nt) / (ps + pt));
    }
    println!("attach_load={}", load());
    Ok(())
}

/// The page both servers serve (only characters that need no shell quoting).
fn body() -> String {
    let mut s = "landscape-netbench-".repeat(50);
    s.push('\n');
    s
}

/// A directory removed on drop and on a termination signal.
struct TempDir {
    path: PathBuf,
    _sig: cleanup::Registered,
}

impl TempDir {
    fn new() -> Res<TempDir> {
        let path = std::env::temp_dir().join(format!("landscape-netbench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let p = path.clone();
        let sig = cleanup::on_signal(move || {
            let _ = std::fs::remove_dir_all(p);
        });
        Ok(TempDir { path, _sig: sig })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The host's `busybox httpd`, killed on drop and on a termination signal.
struct HostHttpd {
    child: std::process::Child,
    port: u16,
    _sig: cleanup::Registered,
}

impl HostHttpd {
    fn start(docroot: &Path) -> Res<HostHttpd> {
        // busybox httpd cannot report a port it picked itself: take a free ephemeral port
        // from the kernel, close it and start httpd on it (retried if another program
        // took it in between).
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("find a free port on 127.0.0.1: {e}"))?
                .port();
            let child = std::process::Command::new("busybox")
                .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
                .arg(docroot)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| {
                    format!("start busybox httpd on the host (busybox-static installed?): {e}")
                })?;
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let sig = cleanup::on_signal(move || {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            });
            let mut h = HostHttpd {
                child,
                port,
                _sig: sig,
            };
            let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(st)) = h.child.try_wait() {
                    last = format!("host httpd on port {port} exited ({st})");
                    break;
                }
                if get_loopback(addr).is_ok() {
                    return Ok(h);
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "host httpd on 127.0.0.1:{port} did not answer in 5 s"
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Err(last)
    }
}

impl Drop for HostHttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on `s`: `GET / HTTP/1.0`, read to the end; returns the body.
fn request(mut s: TcpStream) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: netbench\r\n\r\n")?;
    let mut out = Vec::with_capacity(2048);
    s.read_to_end(&mut out)?;
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| out[i + 4..].to_vec())
        .unwrap_or_default();
    Ok(body)
}

fn get_loopback(addr: SocketAddrV4) -> std::io::Result<Vec<u8>> {
    let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
    // Network::connect sets TCP_NODELAY on its streams; the same here.
    s.set_nodelay(true)?;
    request(s)
}

fn get_net(net: &Network, addr: SocketAddrV4) -> std::io::Result<Vec<u8>> {
    request(net.connect(addr, Duration::from_secs(2))?)
}

/// Mode `connect`: request latency through the network's sockets against loopback.
///
/// Fair by construction, not identical: the instance's httpd runs inside its namespaces
/// (its own user, pid, mount and network namespace, reached over a veth pair and the
/// bridge), the host's httpd does not (plain loopback). That difference is what the
/// landscape network costs a request, which is what this measures. Both are the same
/// busybox binary serving the same page, both fork per connection.
fn connect(rounds: usize) -> Res<()> {
    let rt = runtime()?;
    let net = Net::create(&rt, "connect")?;
    let page = body();
    let docroot = TempDir::new()?;
    std::fs::write(docroot.path.join("index.html"), &page)
        .map_err(|e| format!("write the host docroot: {e}"))?;
    let host = HostHttpd::start(&docroot.path)?;
    let loopback = SocketAddrV4::new(Ipv4Addr::LOCALHOST, host.port);
    let web = spawn_attached(
        &rt,
        &net,
        "nb-web",
        Process::shell(format!(
            "mkdir -p /tmp/www && printf '%s\\n' '{}' > /tmp/www/index.html && exec busybox httpd -f -p 3000 -h /tmp/www",
            page.trim_end()
        )),
    )?;
    let inside = SocketAddrV4::new(web.addr, 3000);
    // Wait (bounded) until the instance serves the page.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match get_net(&net, inside) {
            Ok(b) if b == page.as_bytes() => break,
            Ok(b) => {
                return Err(format!(
                    "{inside} served {} bytes, not the {}-byte page",
                    b.len(),
                    page.len()
                ))
            }
            Err(e) if Instant::now() > deadline => {
                return Err(format!("{inside} did not serve in 10 s: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let b = get_loopback(loopback).map_err(|e| format!("GET {loopback}: {e}"))?;
    if b != page.as_bytes() {
        return Err(format!("{loopback} served {} bytes, not the page", b.len()));
    }
    let time_net = || -> Res<f64> {
        let t = Instant::now();
        let b = get_net(&net, inside).map_err(|e| format!("GET {inside}: {e}"))?;
        let d = ms(t.elapsed());
        if b.len() != page.len() {
            return Err(format!("{inside}: short body ({} bytes)", b.len()));
        }
        Ok(d)
    };
    let time_lo = || -> Res<f64> {
        let t = Instant::now();
        let b = get_loopback(loopback).map_err(|e| format!("GET {loopback}: {e}"))?;
        let d = ms(t.elapsed());
        if b.len() != page.len() {
            return Err(format!("{loopback}: short body ({} bytes)", b.len()));
        }
        Ok(d)
    };
    for _ in 0..20 {
        time_net()?;
        time_lo()?;
    }
    let (mut lo, mut nt) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        if i % 2 == 0 {
            lo.push(time_lo()?);
            nt.push(time_net()?);
        } else {
            nt.push(time_net()?);
            lo.push(time_lo()?);
        }
    }
    let (l, n) = (median(&mut lo), median(&mut nt));
    println!("connect_rounds={rounds}");
    println!("connect_body_bytes={}", page.len());
    println!("connect_loopback_p50_ms={l:.3}");
    println!("connect_net_p50_ms={n:.3}");
    println!("connect_loopback_p90_ms={:.3}", quantile(&mut lo, 0.9));
    println!("connect_net_p90_ms={:.3}", quantile(&mut nt, 0.9));
    println!("ratio={:.3}", n / l);
    println!("connect_load={}", load());
    // Order of clean-up: the instance, then the network; the host httpd and docroot by
    // their guards.
    drop(web);
    drop(net);
    drop(host);
    Ok(())
}
