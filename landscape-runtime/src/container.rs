//! The inside of an instance: what the cloned child does in its new namespaces (mounts,
//! pivot_root, hostname, loopback), then pid 1 (reaper + signal forwarder) and the
//! command's own setup (user, capabilities, rlimits, seccomp, exec).
//!
//! This code runs in a freshly cloned child of the single-threaded helper; errors are
//! reported as text to the helper through the report pipe.

use crate::helper::Request;
use crate::spec::{PortPolicy, Rootfs, APP_MOUNT_PATH, DEFAULT_PATH};
use crate::sys;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

type R<T> = Result<T, String>;

/// Signals the helper and pid 1 handle through a signalfd (blocked otherwise).
pub(crate) fn handled_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        s.add(sig);
    }
    s
}

fn mnt(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> R<()> {
    mount(src, target, fstype, flags, data).map_err(|e| {
        format!(
            "mount {} on {}: {e}",
            src.or(fstype).unwrap_or("-"),
            target.display()
        )
    })
}

fn mkdirs(p: &Path, mode: u32) -> R<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(p)
        .map_err(|e| format!("create directory {}: {e}", p.display()))
}

fn write_file(p: &Path, content: &str) -> R<()> {
    std::fs::write(p, content).map_err(|e| format!("write {}: {e}", p.display()))
}

/// An attached instance's two pipes with its helper: `ready` is written once the network
/// namespace exists, `go` answers once the veth pair is in it.
pub(crate) struct NetPipes {
    pub ready: Option<OwnedFd>,
    pub go: Option<OwnedFd>,
}

/// Entry of the cloned child; never returns. (Its arguments are the descriptors of the
/// hand-over with the helper, each with its own role.)
#[allow(clippy::too_many_arguments)]
pub(crate) fn child_main(
    req: &Request,
    go: OwnedFd,
    report: OwnedFd,
    ready: OwnedFd,
    net: NetPipes,
    assign: Option<OwnedFd>,
    seccomp: Option<&seccompiler::BpfProgram>,
    app_tree: Option<OwnedFd>,
) -> ! {
    let NetPipes {
        ready: net_ready,
        go: net_go,
    } = net;
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // The network namespace first, while the helper writes the id maps: creating one is
    // the most expensive step of a start, and needs no ids (the child of a clone into a
    // new user namespace holds every capability there from the start).
    let net = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("create the network namespace: {e}"))
        .and_then(|()| sys::loopback_up().map_err(|e| format!("bring up loopback: {e}")));
    // Attached instances: the helper now creates the veth pair into this namespace, while
    // this process builds the root filesystem.
    if let Some(w) = net_ready {
        let _ = File::from(w).write_all(b"n");
    }
    let mut go = File::from(go);
    let mut b = [0u8; 1];
    if !matches!(go.read(&mut b), Ok(1)) {
        sys::exit_now(1);
    }
    drop(go);
    let mut report = File::from(report);
    if let Err(msg) = net.and_then(|()| setup(req, net_go, app_tree)) {
        let _ = report.write_all(format!("E{}\n", msg.replace('\n', " ")).as_bytes());
        sys::exit_now(1);
    }
    let Some(assign) = assign else {
        init(req, report, ready, seccomp)
    };
    // Parked: set up; wait for the spec it is handed out with (same root, mounts, user and
    // network: the host checked), then run its command under its name.
    let _ = nix::unistd::write(&ready, b"p");
    let mut text = String::new();
    if File::from(assign).read_to_string(&mut text).is_err() || text.is_empty() {
        sys::exit_now(1);
    }
    let mut assigned = req.clone();
    match serde_json::from_str::<crate::spec::InstanceSpec>(&text) {
        Ok(spec) => assigned.spec = spec,
        Err(e) => {
            let _ = writeln!(report, "Ebad assignment: {e}");
            sys::exit_now(1)
        }
    }
    if let Err(msg) = rename(&assigned.spec) {
        let _ = report.write_all(format!("E{}\n", msg.replace('\n', " ")).as_bytes());
        sys::exit_now(1);
    }
    init(&assigned, report, ready, seccomp)
}

/// A parked instance handed out under its own name: hostname, `/etc/hostname` and
/// `/etc/hosts` (the root is already pivoted; `/etc` is the instance's writable layer).
fn rename(spec: &crate::spec::InstanceSpec) -> R<()> {
    let hostname = spec.hostname.clone().unwrap_or_else(|| spec.name.clone());
    nix::unistd::sethostname(&hostname).map_err(|e| format!("sethostname: {e}"))?;
    let own = spec
        .network
        .as_ref()
        .map_or("127.0.1.1".to_string(), |a| a.address.to_string());
    let _ = std::fs::write("/etc/hostname", format!("{hostname}\n"));
    let _ = std::fs::write(
        "/etc/hosts",
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}\t{hostname}\n"
        ),
    );
    Ok(())
}

/// Gives the instance's `eth0` (created by the helper) its address and the default route.
fn configure_network(att: &crate::network::Attachment) -> R<()> {
    let mut nl = crate::netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let eth0 = nl.index("eth0").map_err(|e| e.to_string())?;
    // The address as a /32 with an on-link route to the subnet: the same reachability as
    // `addr/prefix`, but glibc's getaddrinfo then does not reorder the DNS answers by
    // longest matching prefix (RFC 6724 rule 9, applied to IPv4 within the source's
    // subnet), which would send every client to the same replica.
    nl.add_address(eth0, att.address, 32)
        .map_err(|e| e.to_string())?;
    // A gratuitous ARP when eth0 comes up: the bridge learns the new port of this MAC at
    // once (the bridge end of a predecessor at this address may still exist), and so does
    // slirp4netns. Best effort: the MAC already matches every neighbour cache.
    let _ = std::fs::write("/proc/sys/net/ipv4/conf/eth0/arp_notify", "1");
    nl.set_up(eth0).map_err(|e| e.to_string())?;
    let mask = u32::MAX << (32 - u32::from(att.prefix));
    let subnet = std::net::Ipv4Addr::from(u32::from(att.address) & mask);
    nl.add_link_route(subnet, att.prefix, eth0)
        .map_err(|e| e.to_string())?;
    if let Some(gw) = att.default_route {
        nl.add_default_route(gw).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Builds the instance's root filesystem and pivots into it; for an attached instance,
/// once the root is built, waits on `net_go` for the helper's veth pair and configures
/// `eth0`. `app_tree`: the app directory as an idmapped detached mount (root mode), attached
/// instead of a plain bind.
fn setup(req: &Request, net_go: Option<OwnedFd>, app_tree: Option<OwnedFd>) -> R<()> {
    let spec = &req.spec;
    if !req.keep_stdin {
        let null = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| format!("open /dev/null: {e}"))?;
        nix::unistd::dup2_stdin(&null).map_err(|e| format!("redirect stdin: {e}"))?;
    }
    // Bind sources are opened before switching to the container's ids: the runtime may
    // reach directories (e.g. 0700 temp dirs) that the mapped id cannot traverse.
    let mut sources = Vec::new();
    let app_tree = app_tree.map(|t| (t, APP_MOUNT_PATH));
    if let (Some(app), None) = (&spec.app_dir, &app_tree) {
        sources.push((open_path(app)?, APP_MOUNT_PATH.to_string(), false, true));
    }
    for m in &spec.mounts {
        sources.push((
            open_path(&m.source)?,
            m.target.clone(),
            m.read_only,
            m.source.is_dir(),
        ));
    }
    if matches!(req.idmap, crate::IdMap::Range { .. }) {
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| format!("setresgid 0: {e}"))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| format!("setresuid 0: {e}"))?;
    }
    mnt(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let s = req.staging.as_path();
    mnt(
        Some("tmpfs"),
        s,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    let hostname = spec.hostname.clone().unwrap_or_else(|| spec.name.clone());
    let (own, resolv) = match &spec.network {
        // Names of the landscape come from its DNS, on the bridge.
        Some(att) => (
            att.address.to_string(),
            format!(
                "nameserver {}\nsearch {}\noptions ndots:1 timeout:1 attempts:2\n",
                att.gateway, att.domain
            ),
        ),
        None => (
            "127.0.1.1".to_string(),
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
    };
    let etc_files = [
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}\t{hostname}\n"),
        ),
        ("resolv.conf", resolv),
    ];
    let root: PathBuf;
    match &spec.rootfs {
        Rootfs::Host => {
            root = s.join("root");
            mkdirs(&root, 0o755)?;
            mnt(Some(path_str(&root)?), &root, None, MsFlags::MS_BIND, None)?;
            for top in [
                "usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
            ] {
                let host = Path::new("/").join(top);
                let Ok(meta) = std::fs::symlink_metadata(&host) else {
                    continue;
                };
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&host)
                        .map_err(|e| format!("read link {}: {e}", host.display()))?;
                    symlink(&target, root.join(top)).map_err(|e| format!("symlink /{top}: {e}"))?;
                } else if meta.is_dir() {
                    let upper = s.join("l").join(top).join("u");
                    let work = s.join("l").join(top).join("w");
                    mkdirs(&upper, 0o755)?;
                    mkdirs(&work, 0o700)?;
                    let _ = std::fs::set_permissions(
                        &upper,
                        std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
                    );
                    if top == "etc" {
                        for (f, c) in &etc_files {
                            write_file(&upper.join(f), c)?;
                        }
                    }
                    let target = root.join(top);
                    mkdirs(&target, 0o755)?;
                    overlay(&host, &upper, &work, &target)?;
                }
            }
            for d in ["root", "run", "var/tmp", "mnt", "opt", "srv"] {
                mkdirs(&root.join(d), 0o755)?;
            }
        }
        Rootfs::Dir(image) => {
            let upper = s.join("u");
            let work = s.join("w");
            root = s.join("root");
            mkdirs(&upper.join("etc"), 0o755)?;
            mkdirs(&work, 0o700)?;
            mkdirs(&root, 0o755)?;
            for (f, c) in &etc_files {
                write_file(&upper.join("etc").join(f), c)?;
            }
            overlay(image, &upper, &work, &root)?;
        }
    }
    // /home/user belongs to the container user.
    mkdirs(&root.join("home/user/app"), 0o755)?;
    for d in ["home/user", "home/user/app"] {
        let _ = nix::unistd::chown(
            &root.join(d),
            Some(Uid::from_raw(spec.user.uid)),
            Some(Gid::from_raw(spec.user.gid)),
        );
    }
    // /proc
    let proc_ = root.join("proc");
    mkdirs(&proc_, 0o555)?;
    let nsd = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mnt(Some("proc"), &proc_, Some("proc"), nsd, None)?;
    for masked in [
        "kcore",
        "keys",
        "timer_list",
        "sched_debug",
        "latency_stats",
    ] {
        let p = proc_.join(masked);
        if p.exists() {
            mnt(Some("/dev/null"), &p, None, MsFlags::MS_BIND, None)?;
        }
    }
    // (/proc/bus, irq, fs are writable only with capabilities of the initial user
    // namespace, which no instance has.)
    for ro in ["sys", "sysrq-trigger"] {
        let p = proc_.join(ro);
        if p.exists() {
            mnt(
                Some(path_str(&p)?),
                &p,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            mnt(
                None,
                &p,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nsd,
                None,
            )?;
        }
    }
    // /dev
    let dev = root.join("dev");
    mkdirs(&dev, 0o755)?;
    mnt(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let p = dev.join(node);
        File::create(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
        let host = format!("/dev/{node}");
        mnt(Some(&host), &p, None, MsFlags::MS_BIND, None)?;
    }
    let pts = dev.join("pts");
    mkdirs(&pts, 0o755)?;
    mnt(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    mkdirs(&shm, 0o1777)?;
    mnt(Some("shm"), &shm, Some("tmpfs"), nsd, Some("mode=1777"))?;
    for (l, t) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(t, dev.join(l)).map_err(|e| format!("symlink /dev/{l}: {e}"))?;
    }
    // /tmp
    let tmp = root.join("tmp");
    mkdirs(&tmp, 0o1777)?;
    mnt(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    // App directory and volume mounts.
    // (The app directory first: volumes may be mounted inside it.)
    if let Some((tree, target)) = app_tree {
        let t = root.join(target.trim_start_matches('/'));
        mkdirs(&t, 0o755)?;
        sys::move_mount(tree.as_fd(), &t).map_err(|e| format!("mount {target}: {e}"))?;
    }
    for (fd, target, read_only, is_dir) in &sources {
        let t = root.join(target.trim_start_matches('/'));
        if *is_dir {
            mkdirs(&t, 0o755)?;
        } else {
            if let Some(parent) = t.parent() {
                mkdirs(parent, 0o755)?;
            }
            if !t.exists() {
                File::create(&t).map_err(|e| format!("create mount point {target}: {e}"))?;
            }
        }
        let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
        mnt(
            Some(&src),
            &t,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| format!("mount {target}: {e}"))?;
        if *read_only {
            let st =
                nix::sys::statvfs::statvfs(&t).map_err(|e| format!("statvfs {target}: {e}"))?;
            let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            use nix::sys::statvfs::FsFlags;
            for (f, m) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if st.flags().contains(f) {
                    flags |= m;
                }
            }
            mnt(None, &t, None, flags, None).map_err(|e| format!("read-only {target}: {e}"))?;
        }
    }
    drop(sources);
    // /sys, read-only: a sysfs mount shows the network devices of the mounting process's
    // network namespace (the instance's own).
    let sysfs = root.join("sys");
    mkdirs(&sysfs, 0o555)?;
    mnt(
        Some("sysfs"),
        &sysfs,
        Some("sysfs"),
        nsd | MsFlags::MS_RDONLY,
        None,
    )?;
    if spec.read_only_root {
        // The root and the base layers become read-only; /tmp, /dev/shm, the app directory
        // and the volume mounts are separate mounts and stay writable.
        let mut layers = vec![root.clone()];
        if matches!(spec.rootfs, Rootfs::Host) {
            for top in [
                "usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
            ] {
                let p = root.join(top);
                if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                    layers.push(p);
                }
            }
        }
        for l in layers {
            mnt(
                None,
                &l,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None,
            )
            .map_err(|e| format!("read-only root: {e}"))?;
        }
    }
    if let (Some(att), Some(r)) = (&spec.network, net_go) {
        let mut b = [0u8; 1];
        if !matches!(File::from(r).read(&mut b), Ok(1)) {
            return Err("landscape network: the helper did not attach the instance".into());
        }
        configure_network(att).map_err(|e| format!("landscape network: {e}"))?;
    }
    nix::unistd::sethostname(&hostname).map_err(|e| format!("sethostname: {e}"))?;
    nix::unistd::chdir(&root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach old root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    // A cgroup namespace rooted at the instance's current cgroups (its own when it has
    // limits): /proc/self/cgroup shows no host paths.
    let _ = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP);
    Ok(())
}

fn path_str(p: &Path) -> R<&str> {
    p.to_str()
        .ok_or_else(|| format!("path {} is not UTF-8", p.display()))
}

fn open_path(p: &Path) -> R<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(p)
        .map(OwnedFd::from)
        .map_err(|e| format!("open mount source {}: {e}", p.display()))
}

fn overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> R<()> {
    for p in [lower, upper, work] {
        let s = path_str(p)?;
        if s.contains([',', ':']) {
            return Err(format!(
                "overlay layer path {s:?} contains ',' or ':'; use another directory"
            ));
        }
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        path_str(lower)?,
        path_str(upper)?,
        path_str(work)?
    );
    let with_userxattr = format!("{data},userxattr");
    mnt(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(&with_userxattr),
    )
    .or_else(|_| {
        mnt(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(&data),
        )
    })
}

/// pid 1 of the instance: starts the command, reaps every zombie, forwards signals
/// (SIGTERM to every process of the instance), and reports the command's exit status.
fn init(
    req: &Request,
    mut report: File,
    ready: OwnedFd,
    seccomp: Option<&seccompiler::BpfProgram>,
) -> ! {
    let cmd = match Command::prepare(req, seccomp) {
        Ok(c) => c,
        Err(msg) => {
            let _ = report.write_all(format!("E{msg}\n").as_bytes());
            sys::exit_now(126)
        }
    };
    let failure = Failure::default();
    // The command's process shares this one's memory until it calls execve (as with
    // posix_spawn): no page tables to copy, no copy-on-write faults; it only makes system
    // calls on data prepared here, and records a failure in `failure`.
    let main = match sys::vfork_exec(&mut || cmd.exec(&failure)) {
        Ok(pid) => Pid::from_raw(pid),
        Err(e) => {
            let _ = writeln!(report, "Efork: {e}");
            sys::exit_now(1)
        }
    };
    // pid 1 only reaps and signals from now on: keep CAP_KILL (to signal processes of
    // other container users), nothing else.
    let _ = sys::restrict_capabilities(1 << 5);
    let _ = nix::sys::prctl::set_no_new_privs();
    if let Some(msg) = cmd.describe(&failure) {
        let _ = report.write_all(format!("E{}\n", msg.replace('\n', " ")).as_bytes());
    }
    // The command has called execve (vfork semantics: this process resumes only then) or
    // failed: from now on nothing of the instance runs outside its namespaces and root, and
    // the helper may report it started. (Before this, a host acting on `/proc/<pid>/root`
    // could reach the host's own files: the instance had not pivoted yet.)
    let _ = File::from(ready).write_all(b"r");
    let sfd = match SignalFd::with_flags(&handled_signals(), SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(report, "Esignalfd: {e}");
            sys::exit_now(1)
        }
    };
    // After a stop request every process gets the grace period (the helper sends SIGKILL
    // when it ends): init waits for all of them, not only for the command.
    let mut stopping = false;
    let mut main_done = false;
    loop {
        let Ok(Some(info)) = sfd.read_signal() else {
            continue;
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        match sig {
            Signal::SIGCHLD => loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == main => {
                        let _ = report.write_all(format!("S{code} 0\n").as_bytes());
                        main_done = true;
                    }
                    Ok(WaitStatus::Signaled(pid, s, _)) if pid == main => {
                        let _ = report.write_all(format!("S0 {}\n", s as i32).as_bytes());
                        main_done = true;
                    }
                    Ok(WaitStatus::StillAlive) => break,
                    Err(_) => {
                        if main_done {
                            sys::exit_now(0)
                        }
                        break;
                    }
                    Ok(_) => continue,
                }
                if main_done && !stopping {
                    sys::exit_now(0)
                }
            },
            Signal::SIGTERM => {
                stopping = true;
                let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
            }
            other => {
                let _ = kill(main, other);
            }
        }
    }
}

/// Minimal capability set of a command running as container root.
fn capability_mask(ports: PortPolicy) -> u64 {
    const CHOWN: u32 = 0;
    const DAC_OVERRIDE: u32 = 1;
    const FOWNER: u32 = 3;
    const FSETID: u32 = 4;
    const KILL: u32 = 5;
    const SETGID: u32 = 6;
    const SETUID: u32 = 7;
    const SETPCAP: u32 = 8;
    const NET_BIND_SERVICE: u32 = 10;
    const SYS_CHROOT: u32 = 18;
    const AUDIT_WRITE: u32 = 29;
    const SETFCAP: u32 = 31;
    let mut caps = [
        CHOWN,
        DAC_OVERRIDE,
        FOWNER,
        FSETID,
        KILL,
        SETGID,
        SETUID,
        SETPCAP,
        SYS_CHROOT,
        AUDIT_WRITE,
        SETFCAP,
    ]
    .iter()
    .fold(0u64, |m, c| m | (1 << c));
    if ports == PortPolicy::AllowPrivileged {
        caps |= 1 << NET_BIND_SERVICE;
    }
    caps
}

/// What went wrong in the command's process before or at execve; written there (the
/// process shares init's memory until execve), read by init once it has exec'd or exited.
#[derive(Default)]
struct Failure {
    /// Index of the failed [`Step`] plus one (0: no failure).
    step: std::sync::atomic::AtomicU8,
    errno: std::sync::atomic::AtomicI32,
    /// The candidate path whose execve failed with something other than "not found".
    candidate: std::sync::atomic::AtomicUsize,
}

/// The steps of the command's start, in order.
#[derive(Clone, Copy)]
enum Step {
    Capabilities = 1,
    Groups,
    Gid,
    Uid,
    Cwd,
    CloseFds,
    NoNewPrivs,
    Seccomp,
    Exec,
    NotFound,
}

/// The command of an instance, with everything its process needs prepared beforehand
/// (strings, pointer arrays, ids, limits), so that the process itself only makes system
/// calls.
struct Command<'a> {
    /// Own the strings the pointer arrays point into.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    candidates: Vec<CString>,
    cwd: CString,
    uid: u32,
    gid: u32,
    set_groups: bool,
    caps: u64,
    nofile: Option<u64>,
    core: u64,
    seccomp: Option<&'a seccompiler::BpfProgram>,
    /// The command name and the PATH searched, for messages.
    arg0: String,
    path: String,
}

impl<'a> Command<'a> {
    fn prepare(req: &Request, seccomp: Option<&'a seccompiler::BpfProgram>) -> R<Command<'a>> {
        let spec = &req.spec;
        let mut env: Vec<(String, String)> = spec.process.env.clone();
        let hostname = spec.hostname.clone().unwrap_or_else(|| spec.name.clone());
        for (k, v) in [
            ("PATH", DEFAULT_PATH.to_string()),
            ("HOME", "/home/user".to_string()),
            ("HOSTNAME", hostname),
        ] {
            if !env.iter().any(|(ek, _)| ek == k) {
                env.push((k.to_string(), v));
            }
        }
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let nul = || "the command or its environment contains a NUL byte".to_string();
        let envp = env
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| nul())?;
        let argv = spec
            .process
            .args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| nul())?;
        let arg0 = spec.process.args.first().cloned().unwrap_or_default();
        let candidates = if arg0.contains('/') {
            vec![arg0.clone()]
        } else {
            path.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| format!("{d}/{arg0}"))
                .collect()
        };
        let candidates = candidates
            .into_iter()
            .map(CString::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| nul())?;
        let cwd = spec.process.cwd.as_deref().unwrap_or(APP_MOUNT_PATH);
        let cwd = CString::new(cwd).map_err(|_| format!("working directory {cwd:?}: NUL byte"))?;
        let null_terminated = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        use nix::sys::resource::{getrlimit, Resource};
        let nofile = getrlimit(Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(_, hard)| spec.rlimits.nofile.min(hard));
        Ok(Command {
            argv_ptrs: null_terminated(&argv),
            envp_ptrs: null_terminated(&envp),
            _argv: argv,
            _envp: envp,
            candidates,
            cwd,
            uid: spec.user.uid,
            gid: spec.user.gid,
            set_groups: matches!(req.idmap, crate::IdMap::Range { .. }),
            caps: capability_mask(spec.ports),
            nofile,
            core: spec.rlimits.core,
            seccomp,
            arg0,
            path,
        })
    }

    /// Runs in the command's process (sharing init's memory): sets it up and executes
    /// the command; returns the exit code only when that failed, after recording why.
    fn exec(&self, failure: &Failure) -> i32 {
        use std::sync::atomic::Ordering::Relaxed;
        let fail = |step: Step, errno: i32| {
            failure.step.store(step as u8, Relaxed);
            failure.errno.store(errno, Relaxed);
            if matches!(step, Step::NotFound) {
                127
            } else {
                126
            }
        };
        let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        sys::reset_signals();
        if let Some(n) = self.nofile {
            sys::set_rlimit(libc::RLIMIT_NOFILE, n);
        }
        sys::set_rlimit(libc::RLIMIT_CORE, self.core);
        if let Err(e) = sys::restrict_capabilities(self.caps) {
            return fail(Step::Capabilities, e.raw_os_error().unwrap_or(0));
        }
        if self.set_groups && sys::set_groups(&[self.gid]).is_err() {
            return fail(Step::Groups, errno());
        }
        if sys::set_ids(libc::SYS_setresgid, self.gid).is_err() {
            return fail(Step::Gid, errno());
        }
        if sys::set_ids(libc::SYS_setresuid, self.uid).is_err() {
            return fail(Step::Uid, errno());
        }
        if nix::unistd::chdir(self.cwd.as_c_str()).is_err() {
            return fail(Step::Cwd, errno());
        }
        if sys::cloexec_from(3).is_err() {
            return fail(Step::CloseFds, errno());
        }
        if nix::sys::prctl::set_no_new_privs().is_err() {
            return fail(Step::NoNewPrivs, errno());
        }
        if let Some(filter) = self.seccomp {
            if seccompiler::apply_filter(filter).is_err() {
                return fail(Step::Seccomp, errno());
            }
        }
        let mut denied = None;
        for (i, c) in self.candidates.iter().enumerate() {
            sys::execve(c, &self.argv_ptrs, &self.envp_ptrs);
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                e => denied = Some((i, e)),
            }
        }
        match denied {
            Some((i, e)) => {
                failure.candidate.store(i, Relaxed);
                fail(Step::Exec, e)
            }
            None => fail(Step::NotFound, 0),
        }
    }

    /// The message for a recorded failure (None: the command was executed).
    fn describe(&self, failure: &Failure) -> Option<String> {
        use std::sync::atomic::Ordering::Relaxed;
        let e = nix::Error::from_raw(failure.errno.load(Relaxed));
        let (uid, gid) = (self.uid, self.gid);
        let steps = [
            Step::Capabilities,
            Step::Groups,
            Step::Gid,
            Step::Uid,
            Step::Cwd,
            Step::CloseFds,
            Step::NoNewPrivs,
            Step::Seccomp,
            Step::Exec,
            Step::NotFound,
        ];
        let step = failure.step.load(Relaxed);
        let step = steps.into_iter().find(|s| *s as u8 == step)?;
        let arg0 = &self.arg0;
        Some(match step {
            Step::Capabilities => format!("drop capabilities: {e}"),
            Step::Groups => format!("setgroups {gid}: {e}"),
            Step::Gid => format!("switch to group {gid}: {e}"),
            Step::Uid => format!("switch to user {uid}: {e}"),
            Step::Cwd => format!("working directory {:?}: {e}", self.cwd),
            Step::CloseFds => format!("close inherited descriptors: {e}"),
            Step::NoNewPrivs => format!("set no_new_privs: {e}"),
            Step::Seccomp => format!("install seccomp filter: {e}"),
            Step::Exec => {
                let c = self
                    .candidates
                    .get(failure.candidate.load(Relaxed))
                    .map(|c| c.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("cannot execute {c:?} in the container: {e}")
            }
            Step::NotFound if arg0.contains('/') => {
                format!("command {arg0:?} not found in the container")
            }
            Step::NotFound => format!(
                "command {arg0:?} not found in the container (searched PATH={})",
                self.path
            ),
        })
    }
}
