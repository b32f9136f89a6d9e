//! Instances: persistence of the app directory, throwaway root, isolation, users, ports,
//! exit statuses, mounts, logs. Runs as root and (scripts/test.d/runtime.sh) as an
//! unprivileged user.

mod common;
use common::*;
use landscape_runtime::{
    InstanceRecord, InstanceSpec, LogConfig, Output, PortPolicy, Process, User,
};
use std::time::Duration;

fn main() {
    landscape_runtime::init();
    if let Some(script) = std::env::var_os("LANDSCAPE_RT_TEST_FOREGROUND") {
        // Child-process mode: a single-threaded host running one instance in the
        // foreground, like `landscape exec`.
        let rt = runtime();
        let spec = InstanceSpec::new("fg", Process::shell(script.to_string_lossy()));
        let exit = rt
            .run_foreground(&spec, &mut |pid| eprintln!("started {pid}"))
            .unwrap();
        std::process::exit(exit.status_code());
    }
    if let Some(logs) = std::env::var_os("LANDSCAPE_RT_TEST_DURABLE") {
        // Child-process mode: a host that starts a durable instance, prints its record
        // and waits to be killed.
        let rt = runtime();
        let mut spec = InstanceSpec::new(
            "durable",
            Process::shell("i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done"),
        );
        spec.durable = true;
        let inst = rt
            .spawn(
                &spec,
                Output::Logs(LogConfig::new(std::path::PathBuf::from(logs))),
            )
            .unwrap();
        println!(
            "{}",
            serde_json::to_string(&inst.record().unwrap()).unwrap()
        );
        loop {
            std::thread::park();
        }
    }
    run(&[
        (
            "app_dir_keeps_its_owner_and_adopt_dir_hands_over_a_tree",
            app_dir_keeps_its_owner_and_adopt_dir_hands_over_a_tree,
        ),
        (
            "a_durable_instance_outlives_a_killed_host_and_is_adopted",
            a_durable_instance_outlives_a_killed_host_and_is_adopted,
        ),
        (
            "run_foreground_in_a_single_threaded_host",
            run_foreground_in_a_single_threaded_host,
        ),
        (
            "run_foreground_refuses_a_multi_threaded_process",
            run_foreground_refuses_a_multi_threaded_process,
        ),
        (
            "app_dir_persists_and_root_writes_vanish",
            app_dir_persists_and_root_writes_vanish,
        ),
        (
            "writes_to_read_only_base_fail",
            writes_to_read_only_base_fail,
        ),
        (
            "a_parked_instance_runs_its_assigned_command_under_its_name",
            a_parked_instance_runs_its_assigned_command_under_its_name,
        ),
        ("host_processes_are_invisible", host_processes_are_invisible),
        ("host_paths_are_invisible", host_paths_are_invisible),
        ("hostname_is_per_instance", hostname_is_per_instance),
        ("id_inside_equals_run_as_user", id_inside_equals_run_as_user),
        (
            "host_uid_of_instance_is_unprivileged",
            host_uid_of_instance_is_unprivileged,
        ),
        (
            "port_80_fails_port_3000_works",
            port_80_fails_port_3000_works,
        ),
        (
            "managed_policy_may_bind_port_80",
            managed_policy_may_bind_port_80,
        ),
        (
            "exit_codes_and_signals_are_reported",
            exit_codes_and_signals_are_reported,
        ),
        (
            "missing_command_gives_127_and_a_message",
            missing_command_gives_127_and_a_message,
        ),
        (
            "volume_mounts_dir_and_single_file",
            volume_mounts_dir_and_single_file,
        ),
        (
            "logs_go_to_file_and_subscribers",
            logs_go_to_file_and_subscribers,
        ),
        ("env_and_working_directory", env_and_working_directory),
        (
            "dev_and_proc_are_fresh_and_minimal",
            dev_and_proc_are_fresh_and_minimal,
        ),
        ("cgroup_paths_are_namespaced", cgroup_paths_are_namespaced),
        (
            "read_only_root_keeps_app_and_tmp_writable",
            read_only_root_keeps_app_and_tmp_writable,
        ),
        (
            "hardening_caps_seccomp_no_new_privs_fds",
            hardening_caps_seccomp_no_new_privs_fds,
        ),
        (
            "spawn_from_a_multi_threaded_tokio_runtime",
            spawn_from_a_multi_threaded_tokio_runtime,
        ),
        (
            "command_starts_with_default_signals_and_own_network",
            command_starts_with_default_signals_and_own_network,
        ),
        (
            "service_from_ci_yml_runs_with_its_mounts_user_and_plan",
            service_from_ci_yml_runs_with_its_mounts_user_and_plan,
        ),
    ]);
}

fn app_dir_persists_and_root_writes_vanish() {
    let rt = runtime();
    let app = app_dir(&rt);
    let (exit, out) = sh(
        &rt,
        Some(app.path()),
        "echo kept > /home/user/app/data.txt && echo gone > /rootfile && echo gone > /etc/newfile \
         && echo gone > /usr/newfile && echo gone > /tmp/tmpfile && echo gone > /var/tmp/v && echo written",
    );
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "written");
    assert_eq!(
        std::fs::read_to_string(app.path().join("data.txt")).unwrap(),
        "kept\n"
    );
    assert!(!std::path::Path::new("/rootfile").exists());
    assert!(!std::path::Path::new("/etc/newfile").exists());
    assert!(!std::path::Path::new("/usr/newfile").exists());
    let (exit, out) = sh(
        &rt,
        Some(app.path()),
        "cat /home/user/app/data.txt; for f in /rootfile /etc/newfile /usr/newfile /tmp/tmpfile /var/tmp/v; do [ -e $f ] && echo present $f; done; true",
    );
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "kept");
}

fn writes_to_read_only_base_fail() {
    let rt = runtime();
    let before = std::fs::read("/etc/passwd").unwrap();
    let (exit, out) = sh(
        &rt,
        None,
        "echo evil >> /etc/passwd && echo modified-passwd; echo evil > /usr/bin/sh && echo modified-sh; rm /usr/bin/env && echo removed; echo done",
    );
    assert!(exit.success(), "{exit:?} {out}");
    assert!(
        !out.contains("modified") && !out.contains("removed"),
        "{out}"
    );
    assert!(out.ends_with("done"), "{out}");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), before);
    assert!(std::path::Path::new("/usr/bin/env").exists());
}

fn host_processes_are_invisible() {
    let rt = runtime();
    let (exit, out) = sh(&rt, None, "cd /proc && for p in [0-9]*; do echo $p; done");
    assert!(exit.success(), "{exit:?} {out}");
    let pids: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert!(pids.contains(&1), "{pids:?}");
    // init, the shell (and nothing else of the host).
    assert!(pids.len() <= 3 && pids.iter().all(|p| *p < 10), "{pids:?}");
}

fn host_paths_are_invisible() {
    let rt = runtime();
    let marker = TempDir::new("hostmarker");
    std::fs::write(marker.path().join("secret"), "x").unwrap();
    let script = format!(
        "for p in {} /work /root/.cargo /home/user/app/anything /old_root/etc /sys/fs/cgroup/memory; do [ -e $p ] && echo visible $p; done; ls /tmp | wc -l; ls /home",
        marker.path().join("secret").display()
    );
    let (exit, out) = sh(&rt, None, &script);
    assert!(exit.success(), "{exit:?} {out}");
    assert!(!out.contains("visible"), "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, ["0", "user"], "{out}");
}

fn cgroup_paths_are_namespaced() {
    let rt = runtime();
    let (exit, out) = sh(&rt, None, "cat /proc/self/cgroup");
    assert!(exit.success(), "{exit:?} {out}");
    assert!(!out.is_empty());
    for line in out.lines() {
        assert!(line.ends_with(":/"), "host cgroup path visible: {line}");
    }
}

fn hostname_is_per_instance() {
    let rt = runtime();
    let mut spec = InstanceSpec::new("web", Process::shell("hostname; cat /etc/hostname"));
    let (exit, out) = run_spec(&rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "web\nweb");
    spec.hostname = Some("replica-2".into());
    let (_, out) = run_spec(&rt, &spec);
    assert_eq!(out, "replica-2\nreplica-2");
    assert_ne!(nix::unistd::gethostname().unwrap(), "replica-2");
}

fn id_inside_equals_run_as_user() {
    let rt = runtime();
    let app = TempDir::new("app");
    let user = User {
        uid: 1000,
        gid: 1001,
    };
    rt.adopt_dir(app.path(), user).unwrap();
    let mut spec = InstanceSpec::new(
        "u",
        Process::shell("id -u; id -g; touch /home/user/app/mine && echo ok"),
    );
    spec.user = user;
    spec.app_dir = Some(app.path().to_path_buf());
    let (exit, out) = run_spec(&rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "1000\n1001\nok");
    let (exit, out) = sh(&rt, None, "id -u");
    assert!(exit.success());
    assert_eq!(out, "0");
}

fn host_uid_of_instance_is_unprivileged() {
    let rt = runtime();
    let app = app_dir(&rt);
    let mut spec = InstanceSpec::new(
        "w",
        Process::shell("touch /home/user/app/ready; exec sleep 1000"),
    );
    spec.app_dir = Some(app.path().to_path_buf());
    let mut inst = rt.spawn(&spec, Output::Null).unwrap();
    poll(Duration::from_secs(10), || {
        app.path().join("ready").exists().then_some(())
    })
    .expect("instance did not start");
    let init = inst.pid();
    let kids = poll(Duration::from_secs(5), || {
        let k = children_of(init);
        (!k.is_empty()).then_some(k)
    })
    .expect("the command runs as a child of init");
    let me = nix::unistd::geteuid().as_raw();
    for pid in std::iter::once(init).chain(kids) {
        let uid = host_uid_of(pid).unwrap();
        if me == 0 {
            assert!(uid >= 1000, "pid {pid} runs as host uid {uid}");
        } else {
            assert_eq!(uid, me, "pid {pid}");
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert!(
        status.contains("CapEff:\t0000000000000020\n"),
        "init keeps only CAP_KILL: {status}"
    );
    assert!(status.contains("NoNewPrivs:\t1\n"), "{status}");
    let ns = |p: &std::path::Path| std::fs::read_link(p).unwrap();
    assert_ne!(
        ns(&inst.netns_path()),
        ns(std::path::Path::new("/proc/self/ns/net"))
    );
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(app.path().join("ready")).unwrap().uid();
    assert_ne!(
        owner, 0,
        "file written by container root is owned by host root"
    );
    let exit = inst.stop(Duration::from_secs(5)).unwrap();
    assert_eq!(exit.signal, Some(15), "{exit:?}");
}

const BIND: &str = r#"perl -e 'use Socket; socket(S,PF_INET,SOCK_STREAM,0) or die "socket: $!"; setsockopt(S,SOL_SOCKET,SO_REUSEADDR,1); if (bind(S, sockaddr_in($ARGV[0], INADDR_ANY))) { listen(S,5) or die; print "bound $ARGV[0]\n" } else { print "denied $ARGV[0]: $!\n" }'"#;

fn port_80_fails_port_3000_works() {
    let rt = runtime();
    let (exit, out) = sh(&rt, None, &format!("{BIND} 80; {BIND} 3000"));
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "denied 80: Permission denied\nbound 3000");
}

fn managed_policy_may_bind_port_80() {
    let rt = runtime();
    let mut spec = InstanceSpec::new("mail", Process::shell(format!("{BIND} 80; {BIND} 25")));
    spec.ports = PortPolicy::AllowPrivileged;
    let (exit, out) = run_spec(&rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "bound 80\nbound 25");
}

fn exit_codes_and_signals_are_reported() {
    let rt = runtime();
    let (exit, _) = sh(&rt, None, "exit 7");
    assert_eq!(
        (exit.code, exit.signal, exit.status_code()),
        (Some(7), None, 7)
    );
    let (exit, _) = sh(&rt, None, "kill -USR1 $$");
    assert_eq!(exit.signal, Some(10), "{exit:?}");
    assert_eq!(exit.status_code(), 138);
    let (exit, _) = sh(&rt, None, "true");
    assert!(exit.success());
}

fn missing_command_gives_127_and_a_message() {
    let rt = runtime();
    let spec = InstanceSpec::new("x", Process::argv(["no-such-command-xyz", "arg"]));
    let (exit, _) = run_spec(&rt, &spec);
    assert_eq!(exit.code, Some(127), "{exit:?}");
    let msg = exit.error.unwrap();
    assert!(msg.contains("\"no-such-command-xyz\" not found"), "{msg}");
    let (exit, _, err) = run_spec3(
        &rt,
        &InstanceSpec::new("x", Process::shell("no-such-command-xyz")),
    );
    assert_eq!(exit.code, Some(127));
    assert!(err.contains("not found"), "{err}");
}

fn volume_mounts_dir_and_single_file() {
    let rt = runtime();
    let app = app_dir(&rt);
    std::fs::create_dir_all(app.path().join("data/db")).unwrap();
    std::fs::write(app.path().join("config.ini"), "a=1\n").unwrap();
    rt.adopt_dir(&app.path().join("data/db"), Default::default())
        .unwrap();
    rt.adopt_dir(&app.path().join("config.ini"), Default::default())
        .unwrap();
    let mut spec = InstanceSpec::new(
        "db",
        Process::shell("cat /etc/app.ini && echo b=2 >> /etc/app.ini && echo row > /var/lib/db/table && ls /home/user/app"),
    );
    spec.volume(app.path(), "data/db", "/var/lib/db").unwrap();
    spec.volume(app.path(), "config.ini", "/etc/app.ini")
        .unwrap();
    let (exit, out) = run_spec(&rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "a=1");
    assert_eq!(
        std::fs::read_to_string(app.path().join("config.ini")).unwrap(),
        "a=1\nb=2\n"
    );
    assert_eq!(
        std::fs::read_to_string(app.path().join("data/db/table")).unwrap(),
        "row\n"
    );
    let mut bad = InstanceSpec::new("db", Process::shell("true"));
    let err = bad
        .volume(app.path(), "../etc", "/x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("inside the app directory"), "{err}");
    let err = bad
        .volume(app.path(), "missing", "/x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
    bad.mounts.push(landscape_runtime::BindMount {
        source: app.path().to_path_buf(),
        target: "relative/path".into(),
        read_only: false,
    });
    let err = rt.spawn(&bad, Output::Null).unwrap_err().to_string();
    assert!(err.contains("mount path \"relative/path\""), "{err}");
}

fn logs_go_to_file_and_subscribers() {
    let rt = runtime();
    let app = app_dir(&rt);
    let logs = TempDir::new("logs");
    let mut spec = InstanceSpec::new(
        "log",
        Process::shell("while [ ! -e go ]; do sleep 0.01; done; echo out-line; echo err-line >&2"),
    );
    spec.app_dir = Some(app.path().to_path_buf());
    let mut inst = rt
        .spawn(
            &spec,
            Output::Logs(landscape_runtime::LogConfig::new(logs.path())),
        )
        .unwrap();
    let mut rx = inst.subscribe_logs().unwrap();
    std::fs::write(app.path().join("go"), "").unwrap();
    let exit = inst.wait().unwrap();
    assert!(exit.success());
    let mut got = Vec::new();
    while let Ok(l) = rx.try_recv() {
        got.push((l.stream, l.text, l.timestamp.len()));
    }
    got.sort_by(|a, b| a.1.cmp(&b.1));
    use landscape_runtime::Stream;
    assert_eq!(
        got,
        [
            (Stream::Stderr, "err-line".to_string(), 24),
            (Stream::Stdout, "out-line".to_string(), 24)
        ]
    );
    let file = std::fs::read_to_string(inst.log_path().unwrap()).unwrap();
    assert!(
        file.contains(" stdout out-line\n") && file.contains(" stderr err-line\n"),
        "{file}"
    );
}

fn env_and_working_directory() {
    let rt = runtime();
    let mut spec = InstanceSpec::new(
        "env",
        Process::shell("echo $GREETING; pwd; echo $HOME; echo $PATH")
            .with_env("GREETING", "hello world"),
    );
    spec.app_dir = None;
    let (exit, out) = run_spec(&rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(
        out,
        format!(
            "hello world\n/home/user/app\n/home/user\n{}",
            landscape_runtime::DEFAULT_PATH
        )
    );
}

fn dev_and_proc_are_fresh_and_minimal() {
    let rt = runtime();
    let (exit, out) = sh(
        &rt,
        None,
        "ls /dev | tr '\\n' ' '; echo; head -c 4 /dev/urandom | wc -c; echo x > /dev/null && echo null-ok; cat /proc/kcore 2>/dev/null | wc -c; echo 1 > /proc/sys/kernel/domainname || echo sys-ro; ls /sys/class/net | tr '\\n' ' '; echo; touch /sys/x 2>/dev/null || echo sysfs-ro",
    );
    assert!(exit.success(), "{exit:?} {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].trim(),
        "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
    assert_eq!(lines[1].trim(), "4");
    assert_eq!(lines[2], "null-ok");
    assert_eq!(lines[3].trim(), "0");
    assert!(out.contains("sys-ro"), "{out}");
    assert_eq!(lines[5].trim(), "lo", "{out}");
    assert_eq!(lines[6], "sysfs-ro", "{out}");
}

const CI_YML: &str = r#"schemaVersion: v0.2
run:
  api:
    plan: 8
    runAsUser: 1000
    runAsGroup: 1000
    steps:
      - command: echo step-one > /home/user/app/one
      - command: id -u > /srv/data/uid && cat /home/user/app/one && echo "$GREETING"
    volumeMounts:
      - name: _workspace
        mountPath: /srv/data
        workspacePath: data
"#;

fn service_from_ci_yml_runs_with_its_mounts_user_and_plan() {
    let parsed = landscape_spec::parse_str("ci.yml", CI_YML);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    let landscape = parsed.landscape.unwrap();
    let landscape_spec::Run::Services(services) = &landscape.run else {
        panic!("expected services");
    };
    let plans = landscape_spec::PlanCatalogue::from_json(
        r#"[{"id": 8, "title": "Micro", "cpu": 0.5, "memory": 536870912, "disk": 0}]"#,
    )
    .unwrap();
    let rt = runtime();
    let app = TempDir::new("app");
    std::fs::create_dir_all(app.path().join("data")).unwrap();
    let user = User {
        uid: 1000,
        gid: 1000,
    };
    rt.adopt_dir(app.path(), user).unwrap();
    rt.adopt_dir(&app.path().join("data"), user).unwrap();
    let env = vec![("GREETING".to_string(), "hi from env".to_string())];
    let spec = InstanceSpec::for_service(&services["api"], app.path(), env, Some(&plans)).unwrap();
    assert_eq!(spec.limits.unwrap().memory_bytes, Some(512 << 20));
    assert_eq!(spec.ports, PortPolicy::UnprivilegedOnly);
    let (exit, out) = run_spec(&rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(out, "step-one\nhi from env");
    assert_eq!(
        std::fs::read_to_string(app.path().join("data/uid")).unwrap(),
        "1000\n"
    );
    let err = InstanceSpec::for_service(&services["api"], app.path(), vec![], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("plan 8 is not in the plan catalogue"), "{err}");
}

fn spawn_from_a_multi_threaded_tokio_runtime() {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let rt = std::sync::Arc::new(runtime());
    let logs = TempDir::new("logs");
    tokio_rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..8 {
            let rt = rt.clone();
            let dir = logs.path().to_path_buf();
            handles.push(tokio::spawn(async move {
                let spec = InstanceSpec::new(
                    format!("t{i}"),
                    Process::shell(format!("echo replica-{i}; hostname")),
                );
                let inst = rt
                    .spawn_async(spec, Output::Logs(landscape_runtime::LogConfig::new(dir)))
                    .await
                    .unwrap();
                let mut rx = inst.subscribe_logs().unwrap();
                let (inst, exit) = inst.wait_async().await;
                assert!(exit.unwrap().success());
                let mut lines = Vec::new();
                while let Ok(l) = rx.try_recv() {
                    lines.push(l.text);
                }
                let file = std::fs::read_to_string(inst.log_path().unwrap()).unwrap();
                (i, lines, file)
            }));
        }
        for h in handles {
            let (i, _lines, file) = h.await.unwrap();
            assert!(file.contains(&format!(" stdout replica-{i}\n")), "{file}");
            assert!(file.contains(&format!(" stdout t{i}\n")), "{file}");
        }
    });
}

fn hardening_caps_seccomp_no_new_privs_fds() {
    let rt = runtime();
    // SYS_clone = 56 on x86_64: a clone with CLONE_NEWUSER (0x10000000) | SIGCHLD.
    let clone_ns = if cfg!(target_arch = "x86_64") {
        r#"perl -e '$r = syscall(56, 0x10000011, 0, 0, 0, 0); if ($r < 0) { print "clone-newuser denied: $!\n" } elsif ($r == 0) { exit 0 } else { print "clone-newuser allowed\n" }'"#
    } else {
        "echo 'clone-newuser denied: Operation not permitted'"
    };
    let script = format!(
        "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t' ' '; \
         ls /proc/self/fd | tr '\\n' ' '; echo; \
         unshare -U true 2>/dev/null && echo unshare-allowed || echo unshare-denied; \
         {clone_ns}; \
         seq 1 200000 | sort --parallel=4 -S 64M -n | tail -1; \
         ulimit -n; ulimit -c"
    );
    let (exit, out) = sh(&rt, None, &script);
    assert!(exit.success(), "{exit:?} {out}");
    let lines: Vec<&str> = out.lines().collect();
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP SYS_CHROOT AUDIT_WRITE SETFCAP
    assert_eq!(lines[0], "CapEff: 00000000a00401fb", "{out}");
    assert_eq!(lines[1], "CapBnd: 00000000a00401fb", "{out}");
    assert_eq!(lines[2], "NoNewPrivs: 1");
    assert_eq!(lines[3], "Seccomp: 2");
    // ls itself has 0, 1, 2 and the directory it reads.
    assert_eq!(lines[4].trim(), "0 1 2 3", "{out}");
    assert_eq!(lines[5], "unshare-denied");
    assert_eq!(lines[6], "clone-newuser denied: Operation not permitted");
    assert_eq!(
        lines[7], "200000",
        "threads (clone3 -> clone fallback) must still work"
    );
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    assert_eq!(lines[8], hard.min(65536).to_string());
    assert_eq!(lines[9], "0");
    let mut spec = InstanceSpec::new("m", Process::shell("grep CapEff /proc/self/status"));
    spec.ports = PortPolicy::AllowPrivileged;
    let (_, out) = run_spec(&rt, &spec);
    assert_eq!(
        out, "CapEff:\t00000000a00405fb",
        "NET_BIND_SERVICE added for Managed Containers"
    );
    let mut spec = InstanceSpec::new("u", Process::shell("grep CapEff /proc/self/status"));
    spec.user = User {
        uid: 1000,
        gid: 1000,
    };
    let (_, out) = run_spec(&rt, &spec);
    assert_eq!(
        out, "CapEff:\t0000000000000000",
        "a non-root container user has no capabilities"
    );
}

fn read_only_root_keeps_app_and_tmp_writable() {
    let rt = runtime();
    let app = app_dir(&rt);
    let script = "for p in /x /etc/x /usr/x /var/tmp/x /tmp/x /dev/shm/x /home/user/app/x; do \
                  touch $p 2>/dev/null && echo rw $p || echo ro $p; done";
    let mut spec = InstanceSpec::new("ro", Process::shell(script));
    spec.app_dir = Some(app.path().to_path_buf());
    spec.read_only_root = true;
    let (exit, out) = run_spec(&rt, &spec);
    assert!(exit.success(), "{exit:?} {out}");
    assert_eq!(
        out,
        "ro /x\nro /etc/x\nro /usr/x\nro /var/tmp/x\nrw /tmp/x\nrw /dev/shm/x\nrw /home/user/app/x"
    );
    spec.read_only_root = false;
    let (_, out) = run_spec(&rt, &spec);
    assert_eq!(
        out,
        "rw /x\nrw /etc/x\nrw /usr/x\nrw /var/tmp/x\nrw /tmp/x\nrw /dev/shm/x\nrw /home/user/app/x"
    );
}

fn run_foreground_in_a_single_threaded_host() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(
            "LANDSCAPE_RT_TEST_FOREGROUND",
            "read line; echo got $line; hostname; exit 3",
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"from-stdin\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got from-stdin\nfg\n");
    assert!(stderr.starts_with("started "), "{stderr}");
}

fn run_foreground_refuses_a_multi_threaded_process() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    let rt = runtime();
    let exit = rt
        .run_foreground(
            &InstanceSpec::new("mt", Process::shell("true")),
            &mut |_| {},
        )
        .unwrap();
    drop(tx);
    t.join().unwrap();
    assert!(!exit.success());
    let msg = exit.error.unwrap();
    assert!(msg.contains("single-threaded"), "{msg}");
}

/// The command inherits no ignored or blocked signal (the Rust runtime ignores SIGPIPE),
/// and runs in a network namespace of its own with loopback up (created by the instance
/// right after the clone, while the helper writes its id maps).
fn command_starts_with_default_signals_and_own_network() {
    let rt = runtime();
    let (exit, out) = sh(
        &rt,
        None,
        "grep -E '^(SigIgn|SigBlk):' /proc/self/status | tr -s '\t' ' '; \
         cat /sys/class/net/lo/flags; ls /sys/class/net | tr '\n' ' '; echo; \
         readlink /proc/self/ns/net",
    );
    assert!(exit.success(), "{exit:?} {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "SigBlk: 0000000000000000", "{out}");
    assert_eq!(lines[1], "SigIgn: 0000000000000000", "{out}");
    assert_eq!(lines[2], "0x9", "loopback up (IFF_UP | IFF_LOOPBACK)");
    assert_eq!(lines[3].trim(), "lo", "only loopback: {out}");
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        lines[4],
        host.to_string_lossy(),
        "not the host's network namespace"
    );
    // Two instances never share one.
    let (_, other) = sh(&rt, None, "readlink /proc/self/ns/net");
    assert_ne!(other.trim(), lines[4]);
}

fn a_durable_instance_outlives_a_killed_host_and_is_adopted() {
    use std::io::BufRead;
    let logs = TempDir::new("durable-logs");
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .env("LANDSCAPE_RT_TEST_DURABLE", logs.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(host.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let rec: InstanceRecord = serde_json::from_str(&line).expect("record");
    let log_file = logs.path().join(format!("{}.log", rec.id));
    let ticks = |f: &std::path::Path| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" tick "))
            .count()
    };
    assert!(poll(Duration::from_secs(10), || (ticks(&log_file) > 2)
        .then_some(()))
    .is_some());
    // kill -9 of the host: no drop, no goodbye.
    host.kill().unwrap();
    host.wait().unwrap();
    let pid_alive = |p: i32| std::path::Path::new(&format!("/proc/{p}")).exists();
    assert!(pid_alive(rec.pid), "the instance died with its host");
    let before = ticks(&log_file);
    let rt = runtime();
    let mut inst = rt.adopt(&rec, None).expect("adopt");
    assert_eq!(inst.pid(), rec.pid, "adopted the same process");
    // Its log goes on in the same file, lines written while no host read it included.
    let mut sub = inst.subscribe_logs().expect("logs");
    let next = sub.blocking_recv().expect("a line after adoption");
    assert!(next.text.starts_with("tick "), "{next:?}");
    assert!(
        poll(Duration::from_secs(10), || (ticks(&log_file) > before + 2)
            .then_some(()))
        .is_some()
    );
    let numbers: Vec<u64> = std::fs::read_to_string(&log_file)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.rsplit_once(" tick ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "a line was lost or repeated across the handover: {numbers:?}"
    );
    // Supervision resumes: stop works and the exit is reported; nothing is left.
    let exit = inst.stop(Duration::from_secs(2)).unwrap();
    assert!(exit.signal.is_some() || exit.code.is_some(), "{exit:?}");
    assert!(poll(Duration::from_secs(5), || (!pid_alive(rec.pid))
        .then_some(()))
    .is_some());
    assert!(!rec.socket.exists(), "helper socket left behind");
    assert!(rec.fifos.iter().all(|f| !f.exists()), "pipes left behind");
    // A second adoption of an ended instance is a clear "gone".
    let e = rt.adopt(&rec, None).unwrap_err().to_string();
    assert!(e.contains("ended while no host supervised it"), "{e}");
}

fn app_dir_keeps_its_owner_and_adopt_dir_hands_over_a_tree() {
    use std::os::unix::fs::MetadataExt;
    let rt = runtime();
    let app = TempDir::new("foreign-tree");
    let sub = app.path().join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("file.txt"), "old\n").unwrap();
    std::os::unix::fs::symlink("/etc", app.path().join("etc-link")).unwrap();
    let root = nix::unistd::geteuid().is_root();
    // As root, a checkout that belongs to some other user (uid/gid 4242); unprivileged,
    // the runtime's own files.
    let (owner, group) = if root {
        (4242, 4242)
    } else {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    };
    let tree = [
        app.path().to_path_buf(),
        app.path().join("src"),
        sub.clone(),
        sub.join("file.txt"),
    ];
    if root {
        for p in &tree {
            std::os::unix::fs::chown(p, Some(owner), Some(group)).unwrap();
        }
    }
    // No adopt_dir: the container user (0:0) sees the checkout as its own and writes it,
    // and the host's files keep their owner; what it creates is stored under the owner's
    // ids (root mode: an idmapped mount).
    let (exit, out) = sh(
        &rt,
        Some(app.path()),
        "cd /home/user/app/src/deep && echo new >> file.txt && mkdir built && echo x > built/made \
         && echo \"owner $(stat -c %u:%g file.txt) $(stat -c %u built/made)\" && cat file.txt",
    );
    assert!(exit.success(), "{exit:?}: {out}");
    assert!(
        out.contains("owner 0:0 0"),
        "inside, the files are the user's: {out}"
    );
    assert!(out.contains("old") && out.contains("new"), "{out}");
    for p in tree
        .iter()
        .cloned()
        .chain([sub.join("built"), sub.join("built/made")])
    {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (owner, group),
            "{} keeps (or gets) the checkout's owner",
            p.display()
        );
    }
    // adopt_dir (for the runtime's own directories): as root the tree goes to the mapped
    // container user; the link itself is not followed: /etc keeps its owner.
    rt.adopt_dir(app.path(), Default::default()).unwrap();
    let expect = if root {
        rt.idmap().host_uid(0, 0).unwrap()
    } else {
        owner
    };
    assert_eq!(
        std::fs::metadata(sub.join("built/made")).unwrap().uid(),
        expect
    );
    assert_eq!(std::fs::metadata("/etc").unwrap().uid(), 0);
    let (exit, out) = sh(
        &rt,
        Some(app.path()),
        "echo again >> /home/user/app/src/deep/file.txt",
    );
    assert!(
        exit.success(),
        "an adopted tree stays writable: {exit:?}: {out}"
    );
}

fn a_parked_instance_runs_its_assigned_command_under_its_name() {
    let rt = runtime();
    let app = app_dir(&rt);
    let logs = TempDir::new("parked-logs");
    let mut base = InstanceSpec::new("pool", Process::default());
    base.app_dir = Some(app.path().to_path_buf());
    let parked = rt.park(&base).unwrap();
    let pid = parked.pid();
    // Set up but not running anything of a service: init waits with the root pivoted.
    assert!(std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok());
    assert!(
        children_of(pid).is_empty(),
        "nothing runs before assignment"
    );
    let mut other = base.clone();
    other.user = User { uid: 7, gid: 7 };
    assert!(!parked.fits(&other), "another user needs other id maps");
    let mut spec = base.clone();
    spec.name = "web".into();
    spec.hostname = Some("web-3".into());
    spec.process = Process::shell(
        "echo \"$(hostname) $(cat /etc/hostname) $GREETING $(pwd)\" > out; echo logged-line",
    )
    .with_env("GREETING", "assigned");
    assert!(parked.fits(&spec));
    let mut inst = parked.assign(&spec, LogConfig::new(logs.path())).unwrap();
    assert_eq!(inst.pid(), pid, "the parked instance is the one that runs");
    assert!(inst.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(app.path().join("out")).unwrap(),
        "web-3 web-3 assigned /home/user/app\n"
    );
    let file = std::fs::read_to_string(inst.log_path().unwrap()).unwrap();
    assert!(file.contains(" stdout logged-line\n"), "{file}");
    // A parked instance dropped unused is released: its init goes away.
    let unused = rt.park(&base).unwrap();
    let upid = unused.pid();
    drop(unused);
    assert!(
        poll(Duration::from_secs(10), || (!std::path::Path::new(
            &format!("/proc/{upid}")
        )
        .exists()
            || std::fs::read_to_string(format!("/proc/{upid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true))
        .then_some(()))
        .is_some(),
        "a dropped parked instance keeps running"
    );
}
