//! Supervision with real instances on a real landscape network: stages, replicas behind
//! names, probes, restarts with backoff, crash loops, scaling, live limits, shutdown.
//! Runs as root and as an unprivileged user (scripts/test.d/runtime.sh).

mod common;

use common::{poll, TempDir};
use landscape_runtime::{
    Backoff, EventKind, InstanceSpec, LogConfig, Output, Power, Probe, ProbeConfig, Process,
    ReplicaState, ReplicaStatus, ServiceDef, StepDef, Supervisor, SupervisorConfig,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    common::run(&[
        (
            "stages_run_in_order_and_a_failing_step_is_reported",
            stages_run_in_order_and_a_failing_step_is_reported,
        ),
        (
            "replicas_start_ready_and_are_balanced_by_name",
            replicas_start_ready_and_are_balanced_by_name,
        ),
        (
            "a_killed_replica_is_restarted_with_backoff",
            a_killed_replica_is_restarted_with_backoff,
        ),
        (
            "a_never_healthy_replica_stays_out_of_rotation",
            a_never_healthy_replica_stays_out_of_rotation,
        ),
        ("a_crash_loop_is_visible", a_crash_loop_is_visible),
        (
            "scale_adds_and_removes_replicas_without_touching_others",
            scale_adds_and_removes_replicas_without_touching_others,
        ),
        (
            "plan_change_applies_without_restart",
            plan_change_applies_without_restart,
        ),
        (
            "apply_replaces_a_changed_service_one_replica_at_a_time",
            apply_replaces_a_changed_service_one_replica_at_a_time,
        ),
        (
            "freeze_sleep_and_wake_keep_or_restart_the_replicas",
            freeze_sleep_and_wake_keep_or_restart_the_replicas,
        ),
        ("shutdown_leaves_nothing", shutdown_leaves_nothing),
        (
            "the_pool_hands_out_a_parked_instance_and_refills",
            the_pool_hands_out_a_parked_instance_and_refills,
        ),
    ]);
}

struct Land {
    sup: Supervisor,
    _app: TempDir,
    _logs: TempDir,
}

fn land(tag: &str) -> Land {
    land_with(tag, |_| {})
}

fn land_with(tag: &str, tweak: impl FnOnce(&mut SupervisorConfig)) -> Land {
    static N: AtomicU32 = AtomicU32::new(0);
    let rt = Arc::new(common::runtime());
    let app = common::app_dir(&rt);
    let logs = TempDir::new("suplogs");
    let name = format!(
        "s{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut cfg = SupervisorConfig::new(name, app.path().into(), logs.path().join("l"));
    cfg.probes = ProbeConfig {
        startup_period: Duration::from_millis(50),
        startup_timeout: Duration::from_secs(20),
        period: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        failure_threshold: 3,
    };
    cfg.backoff = Backoff {
        initial: Duration::from_millis(100),
        ..Backoff::default()
    };
    cfg.stop_grace = Duration::from_secs(2);
    tweak(&mut cfg);
    let sup = Supervisor::new(rt, cfg).expect("supervisor");
    Land {
        sup,
        _app: app,
        _logs: logs,
    }
}

/// A service whose replicas serve their hostname on port 3000.
fn web(name: &str, replicas: u32) -> ServiceDef {
    ServiceDef {
        name: name.into(),
        replicas,
        spec: InstanceSpec::new(
            name,
            Process::shell(
                "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec busybox httpd -f -p 3000 -h /tmp/www",
            ),
        ),
        ports: vec![3000],
        probe: Some(Probe::Http {
            port: 3000,
            path: "/".into(),
        }),
    }
}

fn replicas(sup: &Supervisor, service: &str) -> Vec<ReplicaStatus> {
    sup.status()
        .replicas
        .into_iter()
        .filter(|r| r.service == service)
        .collect()
}

fn wait_ready(sup: &Supervisor, service: &str, n: usize) -> Vec<ReplicaStatus> {
    poll(Duration::from_secs(20), || {
        let r = replicas(sup, service);
        (r.len() == n && r.iter().all(|r| r.state == ReplicaState::Ready)).then_some(r)
    })
    .unwrap_or_else(|| panic!("{service}: {n} replicas not ready: {:?}", sup.status()))
}

/// Runs `script` in a client instance on the landscape network; returns its output.
fn client(sup: &Supervisor, script: &str) -> String {
    let rt = common::runtime();
    let net = sup.network();
    let addr = net.allocate().unwrap();
    let mut spec = InstanceSpec::new("client", Process::shell(script));
    spec.network = Some(net.attachment(addr));
    let logs = TempDir::new("clientlogs");
    let mut inst = rt
        .spawn(&spec, Output::Logs(LogConfig::new(logs.path())))
        .unwrap();
    inst.wait().unwrap();
    net.release(addr);
    std::fs::read_to_string(inst.log_path().unwrap())
        .unwrap_or_default()
        .lines()
        .filter_map(landscape_runtime::logs::parse_line)
        .map(|l| l.text)
        .collect::<Vec<_>>()
        .join("\n")
}

fn stages_run_in_order_and_a_failing_step_is_reported() {
    let l = land("stage");
    let mut events = l.sup.subscribe();
    let step = |name: &str, command: &str| StepDef {
        name: name.into(),
        command: command.into(),
    };
    let steps = vec![
        step("first", "echo one > /home/user/app/order"),
        step("second", "echo two >> /home/user/app/order"),
        step("breaks", "echo about to fail; echo boom >&2; exit 3"),
        step("never", "echo never >> /home/user/app/order"),
    ];
    let err = l.sup.run_stage("prepare", &steps, &[]).unwrap_err();
    assert_eq!((err.step.as_str(), err.exit_code), ("breaks", 3));
    assert!(err.last_lines.iter().any(|l| l == "boom"), "{err:?}");
    assert!(err
        .to_string()
        .contains("prepare step \"breaks\" failed with exit code 3"));
    let order = std::fs::read_to_string(l._app.path().join("order")).unwrap();
    assert_eq!(order, "one\ntwo\n");
    let mut started = Vec::new();
    let mut output = Vec::new();
    while let Ok(e) = events.try_recv() {
        match e.kind {
            EventKind::StepStarted { step, .. } => started.push(step),
            EventKind::StepOutput { step, line, .. } => output.push((step, line.text)),
            _ => {}
        }
    }
    assert_eq!(started, ["first", "second", "breaks"]);
    assert!(
        output.contains(&("breaks".into(), "about to fail".into())),
        "{output:?}"
    );
    l.sup
        .run_stage("test", &steps[..2], &[])
        .expect("passing steps");
}

fn replicas_start_ready_and_are_balanced_by_name() {
    let l = land("lb");
    l.sup.start(vec![web("api", 2)]).unwrap();
    let r = wait_ready(&l.sup, "api", 2);
    let ready = l.sup.ready("api").unwrap();
    let mut addrs = ready.borrow().clone();
    addrs.sort();
    let mut want: Vec<_> = r.iter().map(|r| r.address.unwrap()).collect();
    want.sort();
    assert_eq!(addrs, want);
    assert!(r.iter().all(|r| r.pid.is_some() && r.restarts == 0));
    let out = client(
        &l.sup,
        "for i in 1 2 3 4 5 6; do curl -s --max-time 5 http://api:3000/; done; getent hosts api-1",
    );
    assert!(out.contains("api-0") && out.contains("api-1"), "{out:?}");
    assert!(out.contains(&r[1].address.unwrap().to_string()), "{out:?}");
}

fn a_killed_replica_is_restarted_with_backoff() {
    let l = land("kill");
    let mut events = l.sup.subscribe();
    l.sup.start(vec![web("api", 1)]).unwrap();
    let before = wait_ready(&l.sup, "api", 1)[0].clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before.pid.unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = poll(Duration::from_secs(20), || {
        let r = replicas(&l.sup, "api").pop()?;
        (r.restarts == 1 && r.state == ReplicaState::Ready && r.pid != before.pid).then_some(r)
    })
    .unwrap_or_else(|| panic!("not restarted: {:?}", l.sup.status()));
    assert!(after.last_exit.unwrap().contains("signal 9"));
    let mut saw_exit = false;
    let mut delay = None;
    while let Ok(e) = events.try_recv() {
        match e.kind {
            EventKind::ReplicaExited { exit, .. } => saw_exit = exit.signal == Some(9),
            EventKind::ReplicaRestarting { in_ms, .. } => delay = Some(in_ms),
            _ => {}
        }
    }
    assert!(saw_exit);
    assert_eq!(delay, Some(100), "first restart after the initial backoff");
}

fn a_never_healthy_replica_stays_out_of_rotation() {
    let l = land("unhealthy");
    let mut events = l.sup.subscribe();
    let mut def = web("slow", 1);
    // Listens nowhere: the probe on 3000 never succeeds.
    def.spec.process = Process::shell("exec sleep 1000");
    let mut good = web("good", 1);
    good.name = "good".into();
    l.sup.start(vec![def, good]).unwrap();
    wait_ready(&l.sup, "good", 1);
    let ready = l.sup.ready("slow").unwrap();
    let r = &replicas(&l.sup, "slow")[0];
    assert_eq!(r.state, ReplicaState::Starting);
    assert!(ready.borrow().is_empty());
    // By name: the service has no answer while none of its replicas is ready.
    let out = client(
        &l.sup,
        "getent hosts slow || echo no-answer; getent hosts good",
    );
    assert!(out.contains("no-answer"), "{out:?}");
    assert!(
        !ready.has_changed().unwrap(),
        "an unhealthy replica entered the rotation"
    );
    assert!(events
        .try_recv()
        .map(
            |e| !matches!(e.kind, EventKind::ReplicaReady { ref service, .. } if service == "slow")
        )
        .unwrap_or(true));
}

fn a_crash_loop_is_visible() {
    let l = land("crash");
    let mut def = web("bad", 1);
    def.spec.process = Process::shell("echo starting up; echo cannot open config >&2; exit 7");
    def.probe = None;
    l.sup.start(vec![def]).unwrap();
    let r = poll(Duration::from_secs(20), || {
        let r = replicas(&l.sup, "bad").pop()?;
        (r.state == ReplicaState::CrashLoop && r.restarts >= 3).then_some(r)
    })
    .unwrap_or_else(|| panic!("no crash loop: {:?}", l.sup.status()));
    assert_eq!(r.last_exit.as_deref(), Some("exit code 7"));
    assert!(
        r.last_lines.iter().any(|l| l == "cannot open config"),
        "{r:?}"
    );
    assert!(r.next_start_in_ms.is_some() || r.state != ReplicaState::CrashLoop);
}

fn scale_adds_and_removes_replicas_without_touching_others() {
    let l = land("scale");
    l.sup.start(vec![web("api", 1)]).unwrap();
    let first = wait_ready(&l.sup, "api", 1)[0].pid;
    l.sup.scale("api", 3).unwrap();
    let r = wait_ready(&l.sup, "api", 3);
    assert_eq!(r[0].pid, first, "scaling up touched replica 0");
    assert_eq!(l.sup.ready("api").unwrap().borrow().len(), 3);
    let gone = r[2].pid.unwrap();
    l.sup.scale("api", 1).unwrap();
    let r = replicas(&l.sup, "api");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].pid, first, "scaling down touched replica 0");
    assert_eq!(l.sup.ready("api").unwrap().borrow().len(), 1);
    assert!(!std::path::Path::new(&format!("/proc/{gone}")).exists());
    assert!(l
        .sup
        .scale("nope", 1)
        .unwrap_err()
        .to_string()
        .contains("nope"));
    // More replicas than the network has addresses: refused before anything starts.
    let e = l.sup.scale("api", 100_000).unwrap_err().to_string();
    assert!(
        e.contains("100000 replicas")
            && e.contains("more than the 251 addresses of the landscape network 10.88.0.0/24"),
        "{e}"
    );
    assert!(e.contains("use at most 251 here"), "{e}");
    let r = replicas(&l.sup, "api");
    assert_eq!(
        (r.len(), r[0].pid),
        (1, first),
        "a refused scale changed nothing"
    );
    let e = l.sup.start(vec![web("big", 251)]).unwrap_err().to_string();
    assert!(
        e.contains("service \"big\": 251 replicas") && e.contains("(1 taken by other replicas)"),
        "{e}"
    );
    assert!(e.contains("use at most 250 here"), "{e}");
    assert!(!l.sup.services().iter().any(|d| d.name == "big"));
    assert_eq!(replicas(&l.sup, "api").len(), 1);
}

fn plan_change_applies_without_restart() {
    let l = land("plan");
    let mut def = web("api", 1);
    def.spec.limits = Some(landscape_runtime::Limits {
        memory_bytes: Some(256 << 20),
        ..Default::default()
    });
    l.sup.start(vec![def]).unwrap();
    let before = wait_ready(&l.sup, "api", 1)[0].clone();
    let bigger = landscape_runtime::Limits {
        memory_bytes: Some(512 << 20),
        cpu_cores: Some(0.5),
        ..Default::default()
    };
    let rt = common::runtime();
    match rt.limits_support() {
        Ok(()) => {
            l.sup.set_limits("api", bigger).unwrap();
            let pid = before.pid.unwrap();
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            let mem = cg
                .lines()
                .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
                .expect("memory cgroup");
            let limit = std::fs::read_to_string(format!(
                "/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes"
            ))
            .unwrap();
            assert_eq!(limit.trim(), (512u64 << 20).to_string());
            let now = &replicas(&l.sup, "api")[0];
            assert_eq!((now.pid, now.restarts), (before.pid, 0), "restarted");
        }
        Err(why) => {
            println!("    (limits not enforced here: {why}; checking the error instead)");
            let e = l.sup.set_limits("api", bigger).unwrap_err().to_string();
            assert!(e.contains("without cgroups"), "{e}");
        }
    }
}

fn shutdown_leaves_nothing() {
    let l = land("down");
    l.sup.start(vec![web("api", 2), web("web", 1)]).unwrap();
    wait_ready(&l.sup, "api", 2);
    wait_ready(&l.sup, "web", 1);
    let pids: Vec<i32> = l
        .sup
        .status()
        .replicas
        .iter()
        .filter_map(|r| r.pid)
        .collect();
    let holder = l.sup.network().holder_pid();
    l.sup.shutdown();
    for p in pids.iter().chain([holder].iter()) {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "pid {p} left"
        );
    }
    assert!(l
        .sup
        .status()
        .replicas
        .iter()
        .all(|r| r.state == ReplicaState::Stopped));
    let kids: Vec<i32> = common::children_of(std::process::id() as i32)
        .into_iter()
        .filter(|p| Some(*p) != landscape_runtime::fork_server_pid())
        .collect();
    assert_eq!(kids, Vec::<i32>::new());
}

/// `web` serving `VERSION hostname`.
fn web_version(name: &str, replicas: u32, version: &str) -> ServiceDef {
    let mut d = web(name, replicas);
    d.spec.process = Process::shell(format!(
        "mkdir -p /tmp/www && echo {version} $(hostname) > /tmp/www/index.html && exec busybox httpd -f -p 3000 -h /tmp/www"
    ));
    d
}

/// GET / from the host at `addr` through the landscape network.
fn get(sup: &Supervisor, addr: std::net::Ipv4Addr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = sup.network().connect(
        std::net::SocketAddrV4::new(addr, 3000),
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.split(' ').nth(1) == Some("200") => Ok(body.trim().to_string()),
        _ => Err(std::io::Error::other(format!("bad answer: {out:?}"))),
    }
}

fn apply_replaces_a_changed_service_one_replica_at_a_time() {
    let l = land("apply");
    let mut events = l.sup.subscribe();
    l.sup
        .start(vec![
            web_version("api", 2, "v1"),
            web("other", 1),
            web("gone", 1),
        ])
        .unwrap();
    wait_ready(&l.sup, "api", 2);
    wait_ready(&l.sup, "gone", 1);
    let other_pid = wait_ready(&l.sup, "other", 1)[0].pid;
    let ready = l.sup.ready("api").unwrap();
    // A client that, like the router, sends each request to a ready replica; bounded.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (applied, (ok, failed, bodies)) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let (mut ok, mut failed, mut bodies) = (0u32, Vec::new(), Vec::new());
            let mut turn = 0usize;
            while !stop.load(Ordering::SeqCst) && ok + (failed.len() as u32) < 20_000 {
                let addrs = ready.borrow().clone();
                if addrs.is_empty() {
                    failed.push("no ready replica".to_string());
                    continue;
                }
                turn += 1;
                match get(&l.sup, addrs[turn % addrs.len()]) {
                    Ok(b) => {
                        ok += 1;
                        if bodies.last() != Some(&b) {
                            bodies.push(b);
                        }
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, bodies)
        });
        let applied = l.sup.apply(
            vec![
                web_version("api", 2, "v2"),
                web("other", 1),
                web("fresh", 1),
            ],
            Duration::from_secs(20),
        );
        stop.store(true, Ordering::SeqCst);
        (applied, load.join().unwrap())
    });
    let applied = applied.expect("apply");
    assert_eq!(applied.replaced, vec!["api".to_string()]);
    assert_eq!(applied.removed, vec!["gone".to_string()]);
    assert_eq!(applied.added, vec!["fresh".to_string()]);
    assert_eq!(applied.unchanged, vec!["other".to_string()]);
    assert!(
        failed.is_empty(),
        "{} requests failed during the rollout: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 0, "the load loop sent nothing");
    assert!(
        bodies.iter().any(|b| b.starts_with("v1")) && bodies.iter().any(|b| b.starts_with("v2")),
        "{bodies:?}"
    );
    let after = wait_ready(&l.sup, "api", 2);
    for r in &after {
        let body = get(&l.sup, r.address.unwrap()).unwrap();
        assert!(body.starts_with("v2 api-"), "{body}");
    }
    assert_eq!(
        wait_ready(&l.sup, "other", 1)[0].pid,
        other_pid,
        "an unchanged service was touched"
    );
    assert!(replicas(&l.sup, "gone").is_empty());
    wait_ready(&l.sup, "fresh", 1);
    let mut saw = (false, false);
    while let Ok(ev) = events.try_recv() {
        match ev.kind {
            EventKind::RolloutStarted { service } if service == "api" => saw.0 = true,
            EventKind::RolloutFinished {
                service,
                error: None,
            } if service == "api" => saw.1 = true,
            _ => {}
        }
    }
    assert_eq!(saw, (true, true), "rollout events");

    // A definition whose replica never becomes ready: the rollout is abandoned and the
    // running replicas keep serving, untouched.
    let pids: Vec<_> = after.iter().map(|r| r.pid).collect();
    let mut broken = web_version("api", 2, "v3");
    broken.spec.process = Process::shell("echo cannot start; exit 3");
    let e = l
        .sup
        .apply(
            vec![broken, web("other", 1), web("fresh", 1)],
            Duration::from_secs(3),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"api\"") && e.contains("old replicas keep serving"),
        "{e}"
    );
    let kept = wait_ready(&l.sup, "api", 2);
    assert_eq!(kept.iter().map(|r| r.pid).collect::<Vec<_>>(), pids);
    for r in &kept {
        assert!(get(&l.sup, r.address.unwrap()).unwrap().starts_with("v2"));
    }
    assert!(
        l.sup
            .services()
            .iter()
            .any(|d| d.name == "api" && !d.needs_new_instances(&web_version("api", 2, "v2"))),
        "the old definition stays"
    );
}

fn freeze_sleep_and_wake_keep_or_restart_the_replicas() {
    let l = land("idle");
    l.sup.start(vec![web("api", 2)]).unwrap();
    let before = wait_ready(&l.sup, "api", 2);
    let pids: Vec<_> = before.iter().map(|r| r.pid).collect();
    let ready = l.sup.ready("api").unwrap();
    l.sup.freeze("api").unwrap();
    assert_eq!(l.sup.power("api"), Some(Power::Frozen));
    assert!(
        ready.borrow().is_empty(),
        "frozen replicas left the rotation"
    );
    assert!(replicas(&l.sup, "api")
        .iter()
        .all(|r| r.state == ReplicaState::Frozen));
    // Frozen means frozen: the kernel takes the connection, nobody answers.
    let addr = before[0].address.unwrap();
    let answered = poll(Duration::from_secs(5), || {
        use std::io::{Read, Write};
        let mut s = l
            .sup
            .network()
            .connect(
                std::net::SocketAddrV4::new(addr, 3000),
                Duration::from_secs(1),
            )
            .ok()?;
        s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut b = [0u8; 16];
        // An answer (or EOF) means not frozen yet; a timeout means frozen.
        match s.read(&mut b) {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                Some(())
            }
            _ => None,
        }
    });
    assert!(answered.is_some(), "a frozen replica still answered");
    // The probes pause: nothing is restarted however long it stays frozen.
    std::thread::park_timeout(Duration::from_millis(700));
    assert!(replicas(&l.sup, "api")
        .iter()
        .all(|r| r.state == ReplicaState::Frozen && r.restarts == 0));
    l.sup.wake("api").unwrap();
    assert_eq!(
        ready.borrow().len(),
        2,
        "thawed replicas are back in rotation at once"
    );
    let after = wait_ready(&l.sup, "api", 2);
    assert_eq!(
        after.iter().map(|r| r.pid).collect::<Vec<_>>(),
        pids,
        "thaw keeps the processes"
    );
    for r in &after {
        assert!(get(&l.sup, r.address.unwrap()).unwrap().starts_with("api-"));
    }
    l.sup.sleep("api").unwrap();
    assert_eq!(l.sup.power("api"), Some(Power::Asleep));
    let asleep = replicas(&l.sup, "api");
    assert!(
        asleep
            .iter()
            .all(|r| r.state == ReplicaState::Stopped && r.pid.is_none()),
        "{asleep:?}"
    );
    for p in pids.iter().flatten() {
        assert!(
            poll(Duration::from_secs(5), || (!std::path::Path::new(
                &format!("/proc/{p}")
            )
            .exists())
            .then_some(()))
            .is_some(),
            "pid {p} still runs asleep"
        );
    }
    l.sup.wake("api").unwrap();
    let woke = wait_ready(&l.sup, "api", 2);
    assert!(
        woke.iter().all(|r| !pids.contains(&r.pid)),
        "asleep -> new processes"
    );
    assert_eq!(l.sup.power("api"), Some(Power::Running));
}

fn the_pool_hands_out_a_parked_instance_and_refills() {
    let l = land_with("pool", |c| c.pool = 1);
    l.sup.start(vec![web("api", 1)]).unwrap();
    wait_ready(&l.sup, "api", 1);
    let parked = poll(Duration::from_secs(20), || match l.sup.pooled()[..] {
        [p] => Some(p),
        _ => None,
    })
    .expect("the pool was not filled");
    l.sup.scale("api", 2).unwrap();
    let r = wait_ready(&l.sup, "api", 2);
    assert_eq!(
        r[1].pid,
        Some(parked),
        "the new replica is the parked instance"
    );
    // Under its own name, reached by it through the landscape's DNS.
    assert_eq!(
        client(&l.sup, "busybox wget -qO- http://api-1:3000/").trim(),
        "api-1"
    );
    let refilled = poll(Duration::from_secs(20), || match l.sup.pooled()[..] {
        [p] if p != parked => Some(p),
        _ => None,
    })
    .expect("the pool was not refilled");
    l.sup.shutdown();
    assert!(
        poll(Duration::from_secs(10), || {
            let stat = std::fs::read_to_string(format!("/proc/{refilled}/stat"));
            stat.map_or(true, |s| s.contains(") Z ")).then_some(())
        })
        .is_some(),
        "a parked instance outlived the shutdown"
    );
}
