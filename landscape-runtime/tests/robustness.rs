//! Robustness and limits: stop semantics, 200 start/stop cycles that leave nothing
//! behind, cgroup limits (root with cgroup v1, or a delegated cgroup v2 subtree), freeze/thaw,
//! usage; the cgroup v2 files on a real cgroup2 mount (the hybrid's own as root here).

mod common;
use common::*;
use landscape_runtime::cgroup::{Hierarchy, Version};
use landscape_runtime::{Error, InstanceSpec, Limits, Output, Process};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn main() {
    landscape_runtime::init();
    if std::env::var_os("LANDSCAPE_RT_TEST_HOST").is_some() {
        host_that_gets_killed();
    }
    if std::env::var_os("LANDSCAPE_RT_TEST_FORK_SERVER_DIES").is_some() {
        host_whose_fork_server_dies();
    }
    if std::env::var_os("LANDSCAPE_RT_TEST_SHUTDOWN").is_some() {
        host_that_shuts_down();
    }
    run(&[
        (
            "a_state_directory_of_another_user_or_a_symlink_is_refused",
            a_state_directory_of_another_user_or_a_symlink_is_refused,
        ),
        (
            "fork_server_serves_spawns_and_leaks_no_descriptors",
            fork_server_serves_spawns_and_leaks_no_descriptors,
        ),
        (
            "a_dead_fork_server_is_reported_and_replaced_by_re_exec",
            a_dead_fork_server_is_reported_and_replaced_by_re_exec,
        ),
        (
            "shutdown_waits_for_tearing_down_helpers_and_reaps_the_fork_server",
            shutdown_waits_for_tearing_down_helpers_and_reaps_the_fork_server,
        ),
        (
            "instances_die_with_their_host",
            instances_die_with_their_host,
        ),
        (
            "stop_instance_that_ignores_sigterm",
            stop_instance_that_ignores_sigterm,
        ),
        ("stop_reaches_every_process", stop_reaches_every_process),
        ("orphans_are_reaped_by_init", orphans_are_reaped_by_init),
        (
            "start_stop_200_cycles_leave_nothing_behind",
            start_stop_200_cycles_leave_nothing_behind,
        ),
        (
            "prewarmed_helpers_serve_instances_and_leave_nothing",
            prewarmed_helpers_serve_instances_and_leave_nothing,
        ),
        (
            "limits_enforced_matches_cgroup_access",
            limits_enforced_matches_cgroup_access,
        ),
        (
            "memory_limit_reports_oom_with_cgroups",
            memory_limit_reports_oom_with_cgroups,
        ),
        ("pids_limit_with_cgroups", pids_limit_with_cgroups),
        (
            "limit_raised_on_running_instance_with_cgroups",
            limit_raised_on_running_instance_with_cgroups,
        ),
        (
            "freeze_thaw_and_usage_with_cgroups",
            freeze_thaw_and_usage_with_cgroups,
        ),
        (
            "cgroup_v2_instance_gets_one_directory_in_the_delegated_subtree",
            cgroup_v2_instance_gets_one_directory_in_the_delegated_subtree,
        ),
        (
            "cgroup_v2_freezer_and_usage_on_a_real_cgroup2_mount_as_root",
            cgroup_v2_freezer_and_usage_on_a_real_cgroup2_mount_as_root,
        ),
    ]);
}

/// A state directory someone else made first (in a shared /tmp) or a symbolic link is not
/// used: instance roots and sockets live there.
fn a_state_directory_of_another_user_or_a_symlink_is_refused() {
    use landscape_runtime::{Runtime, RuntimeConfig};
    let tmp = TempDir::new("state");
    let open = |dir: PathBuf| {
        Runtime::new(RuntimeConfig {
            state_dir: dir,
            ..Default::default()
        })
    };
    let own = tmp.path().join("own");
    std::fs::create_dir(&own).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&own, &link).unwrap();
    let Err(e) = open(link.clone()) else {
        panic!("a symlinked state directory was used");
    };
    assert!(
        e.to_string().contains(&format!(
            "refusing the state directory {}: it is a symbolic link",
            link.display()
        )),
        "{e}"
    );
    // One of our own, even 0777, is used (narrowed to 0711).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777)).unwrap();
    open(own.clone()).expect("our own state directory");
    let mode = std::fs::metadata(&own).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o711);
    if nix::unistd::geteuid().is_root() {
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o711)).unwrap();
        let Err(e) = open(theirs.clone()) else {
            panic!("another user's state directory was used");
        };
        assert!(
            e.to_string()
                .contains("it belongs to uid 4242, not to uid 0; remove it or set another"),
            "{e}"
        );
    } else {
        println!("    (as root only: a directory of another uid)");
    }
}

fn wait_ready(app: &TempDir) {
    poll(Duration::from_secs(10), || {
        app.path().join("ready").exists().then_some(())
    })
    .expect("the instance did not get ready");
}

fn spawn_ready(
    rt: &landscape_runtime::Runtime,
    script: &str,
    limits: Option<Limits>,
) -> (TempDir, landscape_runtime::Instance) {
    let app = app_dir(rt);
    let mut spec = InstanceSpec::new("r", Process::shell(script));
    spec.app_dir = Some(app.path().to_path_buf());
    spec.limits = limits;
    let inst = rt.spawn(&spec, Output::Null).unwrap();
    wait_ready(&app);
    (app, inst)
}

fn stop_instance_that_ignores_sigterm() {
    let rt = runtime();
    let (_app, mut inst) = spawn_ready(
        &rt,
        "trap '' TERM; touch ready; while :; do sleep 1; done",
        None,
    );
    let pid = inst.pid();
    let exit = inst.stop(Duration::from_millis(300)).unwrap();
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

fn stop_reaches_every_process() {
    let rt = runtime();
    // A background process that outlives its shell would be left behind without pid 1.
    let (app, mut inst) = spawn_ready(
        &rt,
        // `ready` is touched by the background process itself, after its trap is in place.
        "(trap 'echo bg-term > /home/user/app/bg; exit 0' TERM; touch ready; while :; do sleep 0.05; done) & wait",
        None,
    );
    let exit = inst.stop(Duration::from_secs(10)).unwrap();
    assert_eq!(exit.signal, Some(15), "{exit:?}");
    assert_eq!(
        std::fs::read_to_string(app.path().join("bg")).unwrap(),
        "bg-term\n"
    );
}

fn orphans_are_reaped_by_init() {
    let rt = runtime();
    // Double-forked children become children of pid 1, which must reap them.
    let (_app, mut inst) = spawn_ready(
        &rt,
        "for i in 1 2 3 4 5; do (true &) ; done; touch ready; sleep 1000",
        None,
    );
    let init = inst.pid();
    let kids = poll(Duration::from_secs(10), || {
        let kids = children_of(init);
        let zombies = kids
            .iter()
            .filter(|k| {
                std::fs::read_to_string(format!("/proc/{k}/stat"))
                    .map(|s| {
                        s.rsplit(')')
                            .next()
                            .unwrap_or("")
                            .trim_start()
                            .starts_with('Z')
                    })
                    .unwrap_or(false)
            })
            .count();
        (kids.len() == 1 && zombies == 0).then_some(kids)
    });
    assert!(
        kids.is_some(),
        "init keeps zombies: {:?}",
        children_of(init)
    );
    inst.stop(Duration::from_secs(5)).unwrap();
}

fn leftovers(state_dir: &std::path::Path, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir(state_dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(prefix) {
                found.push(format!("staging dir {n}"));
            }
        }
    }
    let mut cgroup_dirs: Vec<PathBuf> = ["memory", "cpu", "cpuacct", "pids", "freezer"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join("landscape"))
        .collect();
    if let Ok(h) = Hierarchy::detect(Path::new("/sys/fs/cgroup")) {
        if h.version() == Version::V2 {
            cgroup_dirs.push(h.base().join("landscape"));
        }
    }
    for dir in cgroup_dirs {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(prefix) {
                    found.push(format!("cgroup {}/{n}", dir.display()));
                }
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mounts.lines() {
        if l.contains(&state_dir.display().to_string()) {
            found.push(format!("mount {l}"));
        }
    }
    for k in own_children() {
        found.push(format!("child process {k}"));
    }
    if let Some(server) = landscape_runtime::fork_server_pid() {
        for k in children_of(server) {
            found.push(format!("helper process {k} (child of the fork server)"));
        }
    }
    found
}

/// Children of this process other than its fork server.
fn own_children() -> Vec<i32> {
    let server = landscape_runtime::fork_server_pid();
    children_of(std::process::id() as i32)
        .into_iter()
        .filter(|p| Some(*p) != server)
        .collect()
}

fn start_stop_200_cycles_leave_nothing_behind() {
    let rt = runtime();
    let state_dir = landscape_runtime::RuntimeConfig::default().state_dir;
    let prefix = format!("cycle-{}-", std::process::id());
    let mut inits = Vec::new();
    for i in 0..200 {
        let spec = InstanceSpec::new("cycle", Process::argv(["sleep", "1000"]));
        let mut inst = rt.spawn(&spec, Output::Null).unwrap();
        inits.push(inst.pid());
        let exit = if i % 2 == 0 {
            inst.stop(Duration::from_secs(5)).unwrap()
        } else {
            drop(inst); // dropping kills
            continue;
        };
        assert!(
            exit.signal == Some(15) || exit.signal == Some(9),
            "{exit:?}"
        );
    }
    // A helper exits right after reporting the exit: give the last ones a moment.
    let clean = poll(Duration::from_secs(10), || {
        leftovers(&state_dir, &prefix).is_empty().then_some(())
    });
    let left = leftovers(&state_dir, &prefix);
    assert!(clean.is_some() && left.is_empty(), "{left:#?}");
    let me = nix::unistd::geteuid().as_raw();
    for pid in inits {
        // A recycled pid would belong to someone else: only our mapped users count.
        if let Some(uid) = host_uid_of(pid) {
            assert!(
                me != 0 && uid != me || me == 0 && uid < 1000,
                "instance init {pid} survived"
            );
        }
    }
}

fn limits_enforced_matches_cgroup_access() {
    let rt = runtime();
    let spec = {
        let mut s = InstanceSpec::new("lim", Process::argv(["sleep", "1000"]));
        s.limits = Some(Limits {
            memory_bytes: Some(64 << 20),
            ..Default::default()
        });
        s
    };
    let mut inst = rt.spawn(&spec, Output::Null).unwrap();
    match rt.limits_support() {
        Ok(()) => {
            assert!(is_root() || inst.limits_enforced());
            assert!(inst.limits_enforced());
            assert!(inst.usage().is_ok());
        }
        Err(reason) => {
            println!("limits not enforced here: {reason}");
            assert!(!inst.limits_enforced());
            assert!(matches!(inst.usage(), Err(Error::LimitsNotEnforced(_))));
            assert!(matches!(
                inst.set_limits(&Limits::default()),
                Err(Error::LimitsNotEnforced(_))
            ));
            assert!(
                !(is_root() && cgroup_v1_mounted()),
                "root with cgroup v1 mounted must enforce limits: {reason}"
            );
            if let Ok(h) = Hierarchy::detect(Path::new("/sys/fs/cgroup")) {
                panic!("{h:?} is usable, yet the runtime says: {reason}");
            }
        }
    }
    inst.stop(Duration::from_secs(5)).unwrap();
}

/// Whether cgroup v1 controllers are mounted (this runtime's limits need them).
fn cgroup_v1_mounted() -> bool {
    ["memory", "cpu", "cpuacct", "pids", "freezer"]
        .iter()
        .all(|c| std::path::Path::new(&format!("/sys/fs/cgroup/{c}/cgroup.procs")).exists())
}

/// Whether this user may enforce limits here (root with cgroup v1, or a delegated cgroup v2
/// subtree); prints why not.
fn cgroups_here() -> bool {
    match Hierarchy::detect(Path::new("/sys/fs/cgroup")) {
        Ok(_) => true,
        Err(reason) => {
            println!("skipped: cgroup limits are not usable here: {reason}");
            false
        }
    }
}

fn memory_limit_reports_oom_with_cgroups() {
    if !cgroups_here() {
        return;
    }
    let rt = runtime();
    let mut spec = InstanceSpec::new(
        "oom",
        Process::shell("head -c 400000000 /dev/zero | tail > /dev/null; echo survived"),
    );
    spec.limits = Some(Limits {
        memory_bytes: Some(32 << 20),
        ..Default::default()
    });
    let (exit, out) = run_spec(&rt, &spec);
    assert!(exit.oom_killed, "{exit:?} {out}");
    assert!(!out.contains("survived") || exit.oom_killed);
    let mut spec = InstanceSpec::new(
        "fits",
        Process::shell("head -c 4000000 /dev/zero | tail > /dev/null; echo survived"),
    );
    spec.limits = Some(Limits {
        memory_bytes: Some(64 << 20),
        ..Default::default()
    });
    let (exit, out) = run_spec(&rt, &spec);
    assert!(!exit.oom_killed && exit.success(), "{exit:?} {out}");
    assert_eq!(out, "survived");
}

fn pids_limit_with_cgroups() {
    if !cgroups_here() {
        return;
    }
    let rt = runtime();
    let script = "n=0; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 100 & n=$((n+1)); done; echo started $n";
    let mut spec = InstanceSpec::new("pids", Process::shell(script));
    spec.limits = Some(Limits {
        pids: Some(6),
        ..Default::default()
    });
    let (exit, out, err) = run_spec3(&rt, &spec);
    assert!(!out.contains("started 12"), "{exit:?} {out}");
    assert!(err.to_lowercase().contains("fork"), "{exit:?} {err}");
    spec.limits = Some(Limits {
        pids: Some(64),
        ..Default::default()
    });
    let (exit, out) = run_spec(&rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "started 12");
}

fn limit_raised_on_running_instance_with_cgroups() {
    if !cgroups_here() {
        return;
    }
    let rt = runtime();
    // The command waits for "go", then needs ~48 MiB: too much for the initial 32 MiB.
    let (app, mut inst) = spawn_ready(
        &rt,
        "touch ready; while [ ! -e go ]; do sleep 0.01; done; head -c 48000000 /dev/zero | tail > /dev/null && echo ok > done",
        Some(Limits { memory_bytes: Some(32 << 20), cpu_cores: Some(0.5), pids: Some(100) }),
    );
    let cg = inst.cgroups().unwrap().clone();
    let read = |c: &str, f: &str| {
        std::fs::read_to_string(cg.path(c).join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    let (memory, cpu, half, one) = match cg.version() {
        Version::V1 => (
            "memory.limit_in_bytes",
            "cpu.cfs_quota_us",
            "50000",
            "100000",
        ),
        Version::V2 => ("memory.max", "cpu.max", "50000 100000", "100000 100000"),
    };
    assert_eq!(read("memory", memory), (32u64 << 20).to_string());
    assert_eq!(read("cpu", cpu), half);
    inst.set_limits(&Limits {
        memory_bytes: Some(256 << 20),
        cpu_cores: Some(1.0),
        pids: Some(100),
    })
    .unwrap();
    assert_eq!(read("memory", memory), (256u64 << 20).to_string());
    assert_eq!(read("cpu", cpu), one);
    std::fs::write(app.path().join("go"), "").unwrap();
    let exit = inst.wait().unwrap();
    assert!(exit.success() && !exit.oom_killed, "{exit:?}");
    assert_eq!(
        std::fs::read_to_string(app.path().join("done")).unwrap(),
        "ok\n"
    );
}

fn freeze_thaw_and_usage_with_cgroups() {
    if !cgroups_here() {
        return;
    }
    let rt = runtime();
    let (_app, mut inst) = spawn_ready(
        &rt,
        "touch ready; while :; do :; done",
        Some(Limits::default()),
    );
    let u1 = poll(Duration::from_secs(10), || {
        let u = inst.usage().unwrap();
        (u.cpu_time_ns > 0 && u.memory_current > 0 && u.pids_current >= 2).then_some(u)
    })
    .expect("usage grows");
    inst.freeze().unwrap();
    let frozen = inst.usage().unwrap().cpu_time_ns;
    let cg = inst.cgroups().unwrap();
    match cg.version() {
        Version::V1 => {
            let state = std::fs::read_to_string(cg.path("freezer").join("freezer.state")).unwrap();
            assert_eq!(state.trim(), "FROZEN");
        }
        Version::V2 => {
            let events = std::fs::read_to_string(cg.path("").join("cgroup.events")).unwrap();
            assert!(events.lines().any(|l| l == "frozen 1"), "{events}");
        }
    }
    inst.thaw().unwrap();
    poll(Duration::from_secs(10), || {
        (inst.usage().unwrap().cpu_time_ns > frozen).then_some(())
    })
    .expect("cpu time grows again after thaw");
    assert!(u1.memory_peak >= u1.memory_current);
    // A frozen instance can still be stopped.
    inst.freeze().unwrap();
    let exit = inst.stop(Duration::from_millis(200)).unwrap();
    assert!(exit.signal.is_some(), "{exit:?}");
}

fn prewarmed_helpers_serve_instances_and_leave_nothing() {
    let cfg = landscape_runtime::RuntimeConfig {
        prewarm: 2,
        ..Default::default()
    };
    let rt = landscape_runtime::Runtime::new(cfg).unwrap();
    assert_eq!(rt.idle_helpers(), 2);
    for i in 0..5 {
        let spec = InstanceSpec::new("warm", Process::shell(format!("echo warm-{i}")));
        let (exit, out) = run_spec(&rt, &spec);
        assert!(exit.success(), "{exit:?}");
        assert_eq!(out, format!("warm-{i}"));
    }
    poll(Duration::from_secs(20), || {
        (rt.idle_helpers() == 2).then_some(())
    })
    .expect("the pool refills to 2");
    assert_eq!(own_children().len(), 2, "only the two idle helpers");
    drop(rt);
    let left = poll(Duration::from_secs(20), || {
        own_children().is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "idle helpers survived the runtime: {:?}",
        own_children()
    );
}

/// Child-process mode of this test binary: a host that starts an instance, prints its
/// init pid and waits to be killed.
fn host_that_gets_killed() -> ! {
    let rt = runtime();
    let inst = rt
        .spawn(
            &InstanceSpec::new("orphan", Process::argv(["sleep", "1000"])),
            Output::Null,
        )
        .unwrap();
    println!("{}", inst.pid());
    std::mem::forget(inst);
    loop {
        std::thread::park();
    }
}

fn ppid_of(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

fn instances_die_with_their_host() {
    use std::io::BufRead;
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .env("LANDSCAPE_RT_TEST_HOST", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(host.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let init: i32 = line.trim().parse().unwrap();
    let helper = ppid_of(init).expect("instance running");
    // The helper was forked by the host's fork server, a child of the host.
    let server = ppid_of(helper).expect("helper running");
    assert_eq!(ppid_of(server), Some(host.id() as i32));
    host.kill().unwrap();
    host.wait().unwrap();
    let gone = poll(Duration::from_secs(20), || {
        // Gone or a zombie waiting for its (new) parent; pids are not reused this fast.
        let alive = |p: i32| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| {
                    !s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        };
        (!alive(init) && !alive(helper) && !alive(server)).then_some(())
    });
    assert!(
        gone.is_some(),
        "instance {init} / helper {helper} / fork server {server} outlived the host"
    );
}

/// Instances are started through the fork server: their helper is its child, many start
/// at once from a multi-threaded tokio runtime, and descriptors the host opens later
/// (even without close-on-exec) reach neither the helpers nor the instances.
fn fork_server_serves_spawns_and_leaks_no_descriptors() {
    let server = landscape_runtime::fork_server_pid().expect("init() started a fork server");
    assert_eq!(ppid_of(server), Some(std::process::id() as i32));
    let secret = TempDir::new("fd-leak");
    let file = std::fs::File::create(secret.path().join("host-only")).unwrap();
    // A descriptor without close-on-exec, opened after init().
    let leaked = nix::unistd::dup(&file).unwrap();
    let rt = std::sync::Arc::new(runtime());
    let app = app_dir(&rt);
    let mut spec = InstanceSpec::new(
        "fs",
        Process::shell(
            "ls /proc/self/fd | tr '\\n' ' '; touch /home/user/app/ready; exec sleep 1000",
        ),
    );
    spec.app_dir = Some(app.path().to_path_buf());
    let logs = TempDir::new("fs-logs");
    let mut inst = rt
        .spawn(
            &spec,
            Output::Logs(landscape_runtime::LogConfig::new(logs.path())),
        )
        .unwrap();
    wait_ready(&app);
    let helper = ppid_of(inst.pid()).unwrap();
    assert_eq!(
        ppid_of(helper),
        Some(server),
        "the helper is the fork server's child"
    );
    let target = secret.path().join("host-only");
    for pid in [server, helper, inst.pid()] {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            let link = std::fs::read_link(fd.path()).unwrap_or_default();
            assert_ne!(link, target, "pid {pid} holds the host's descriptor");
        }
    }
    inst.stop(Duration::from_secs(5)).unwrap();
    let out = std::fs::read_to_string(inst.log_path().unwrap()).unwrap();
    assert!(out.contains("0 1 2 3 "), "{out}");
    assert!(!out.contains(" 4 "), "{out}");
    drop(leaked);
    // Many at once, from tokio worker threads.
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let outs = tokio_rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..24 {
            let rt = rt.clone();
            tasks.push(tokio::spawn(async move {
                let logs = TempDir::new("fs-many");
                let spec =
                    InstanceSpec::new("many", Process::shell(format!("echo many-$((20 + {i}))")));
                let inst = rt
                    .spawn_async(
                        spec,
                        Output::Logs(landscape_runtime::LogConfig::new(logs.path())),
                    )
                    .await
                    .unwrap();
                let (inst, exit) = inst.wait_async().await;
                assert!(exit.unwrap().success());
                std::fs::read_to_string(inst.log_path().unwrap()).unwrap()
            }));
        }
        let mut outs = Vec::new();
        for t in tasks {
            outs.push(t.await.unwrap());
        }
        outs
    });
    for (i, out) in outs.iter().enumerate() {
        assert!(out.contains(&format!("many-{}", 20 + i)), "{out}");
    }
    assert_eq!(
        landscape_runtime::fork_server_pid(),
        Some(server),
        "still the same server"
    );
}

/// Child-process mode: kills its own fork server, then starts an instance (which must
/// work by re-executing this binary) and prints what it saw.
fn host_whose_fork_server_dies() -> ! {
    let server = landscape_runtime::fork_server_pid().expect("a fork server");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Dead (a zombie until the runtime notices and reaps it).
    poll(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{server}/stat"))
            .ok()
            .filter(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
    })
    .expect("the fork server died");
    let rt = runtime();
    let (exit, out) = sh(&rt, None, "echo still-works");
    println!(
        "exit={} out={out} server_after={:?}",
        exit.success(),
        landscape_runtime::fork_server_pid()
    );
    // The dead server was reaped: no zombie child left.
    let zombies: Vec<i32> = children_of(std::process::id() as i32);
    println!("children={zombies:?}");
    std::process::exit(0)
}

/// Runs this binary again as the host `var` selects; asserts it succeeded, returns its
/// standard output.
fn sub_host(var: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(var, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn a_dead_fork_server_is_reported_and_replaced_by_re_exec() {
    let text = sub_host("LANDSCAPE_RT_TEST_FORK_SERVER_DIES");
    assert!(
        text.contains("exit=true out=still-works server_after=None"),
        "{text}"
    );
    assert!(text.contains("children=[]"), "{text}");
}

/// A host (this binary again, so that the test binary keeps its fork server) that starts
/// and stops six instances, then settles and shuts the runtime down; prints what it saw.
fn host_that_shuts_down() -> ! {
    let server = landscape_runtime::fork_server_pid().expect("a fork server");
    let rt = runtime();
    let mut helpers = Vec::new();
    let mut instances = Vec::new();
    for i in 0..6 {
        let spec = InstanceSpec::new(format!("sd{i}"), Process::argv(["sleep", "1000"]));
        let inst = rt.spawn(&spec, Output::Null).expect("spawn");
        helpers.push(ppid_of(inst.pid()).expect("the helper of a running instance"));
        instances.push(inst);
    }
    let forked = helpers.iter().all(|h| ppid_of(*h) == Some(server));
    for mut inst in instances {
        inst.stop(Duration::from_secs(5)).expect("stop");
    }
    let settled = landscape_runtime::settle(Duration::from_secs(20));
    // A helper's socket closes as it exits: its pid goes within moments of that.
    let helpers_gone = poll(Duration::from_secs(5), || {
        helpers
            .iter()
            .all(|h| !Path::new(&format!("/proc/{h}")).exists())
            .then_some(())
    })
    .is_some();
    let shut = landscape_runtime::shutdown(Duration::from_secs(20));
    // Reaped by the shutdown itself, so gone at once, with no zombie left to this host.
    let server_gone = !Path::new(&format!("/proc/{server}")).exists();
    let server_after = landscape_runtime::fork_server_pid();
    let (exit, out) = sh(&rt, None, "echo after-shutdown");
    let children = children_of(std::process::id() as i32);
    println!(
        "forked={forked} settled={settled} helpers_gone={helpers_gone} shut={shut} \
         server_gone={server_gone} server_after={server_after:?} after={}:{} children={children:?}",
        exit.success(),
        out.trim()
    );
    std::process::exit(0)
}

fn shutdown_waits_for_tearing_down_helpers_and_reaps_the_fork_server() {
    let text = sub_host("LANDSCAPE_RT_TEST_SHUTDOWN");
    assert!(
        text.contains(
            "forked=true settled=true helpers_gone=true shut=true server_gone=true \
             server_after=None after=true:after-shutdown children=[]"
        ),
        "{text}"
    );
}

/// The cgroup2 mount: `/sys/fs/cgroup` on a unified machine, else a hybrid's own (usually
/// `/sys/fs/cgroup/unified`, without controllers) from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").is_file() {
        return Some(PathBuf::from("/sys/fs/cgroup"));
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split(' ').next() != Some("cgroup2") {
            return None;
        }
        left.split(' ').nth(4).map(PathBuf::from)
    })
}

fn cgroup_v2_instance_gets_one_directory_in_the_delegated_subtree() {
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").is_file() {
        println!("skipped: /sys/fs/cgroup is not a cgroup2 mount here (cgroup v1 or hybrid); the v1 tests above cover this machine");
        return;
    }
    if !cgroups_here() {
        return;
    }
    let h = Hierarchy::detect(Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(h.version(), Version::V2);
    let rt = runtime();
    let (_app, mut inst) = spawn_ready(
        &rt,
        "touch ready; sleep 1000",
        Some(Limits {
            memory_bytes: Some(48 << 20),
            cpu_cores: Some(0.25),
            pids: Some(32),
        }),
    );
    let cg = inst.cgroups().unwrap().clone();
    assert_eq!(cg.version(), Version::V2);
    let dir = cg.path("");
    assert_eq!(dir.parent(), Some(h.base().join("landscape").as_path()));
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.max"), (48u64 << 20).to_string());
    assert_eq!(read("cpu.max"), "25000 100000");
    assert_eq!(read("pids.max"), "32");
    // The instance's init is in it (as the host sees it: the path from the mount).
    let rel = dir
        .strip_prefix("/sys/fs/cgroup")
        .unwrap()
        .display()
        .to_string();
    let init_cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", inst.pid())).unwrap();
    assert!(
        init_cgroup.lines().any(|l| l == format!("0::/{rel}")),
        "{init_cgroup} (wanted 0::/{rel})"
    );
    // The base holds no processes any more (the runtime's own moved into `host` where
    // there were any): its controllers reach the instances.
    let base_procs = std::fs::read_to_string(h.base().join("cgroup.procs")).unwrap();
    assert!(
        h.base() == Path::new("/sys/fs/cgroup") || base_procs.trim().is_empty(),
        "{base_procs}"
    );
    let usage = inst.usage().unwrap();
    assert!(
        usage.memory_current > 0 && usage.pids_current >= 2,
        "{usage:?}"
    );
    inst.stop(Duration::from_secs(5)).unwrap();
    poll(Duration::from_secs(10), || (!dir.exists()).then_some(()))
        .expect("the instance's cgroup is removed");
}

fn cgroup_v2_freezer_and_usage_on_a_real_cgroup2_mount_as_root() {
    let Some(mount) = cgroup2_mount() else {
        println!("skipped: no cgroup2 mount on this machine");
        return;
    };
    if !is_root() {
        println!("skipped: writing to {} needs root here", mount.display());
        return;
    }
    // A real kernel's cgroup v2 files, driven through the module's own handle (on a hybrid
    // mount without controllers: no limits, but the freezer, cpu.stat and cgroup.procs are
    // the core's).
    let cg = Hierarchy::v2_at(&mount).cgroups(&format!("v2core-{}", std::process::id()));
    cg.create(&Limits::default()).unwrap();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cg.add(child.id() as i32).unwrap();
        let procs = std::fs::read_to_string(cg.path("").join("cgroup.procs")).unwrap();
        assert_eq!(procs.trim(), child.id().to_string());
        let busy = poll(Duration::from_secs(10), || {
            let u = cg.usage();
            (u.cpu_time_ns > 0).then_some(u)
        })
        .expect("cpu.stat usage_usec grows");
        assert!(busy.cpu_time_ns > 0, "{busy:?}");
        cg.freeze(true).unwrap();
        let events = std::fs::read_to_string(cg.path("").join("cgroup.events")).unwrap();
        assert!(events.lines().any(|l| l == "frozen 1"), "{events}");
        let frozen = cg.usage().cpu_time_ns;
        cg.freeze(false).unwrap();
        poll(Duration::from_secs(10), || {
            (cg.usage().cpu_time_ns > frozen).then_some(())
        })
        .expect("cpu time grows again after thaw");
        assert!(!cg.oom_killed());
    }));
    let _ = child.kill();
    let _ = child.wait();
    cg.remove().unwrap();
    assert!(!cg.path("").exists());
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
