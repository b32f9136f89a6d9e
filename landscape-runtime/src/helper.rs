//! The single-threaded fork path. A host never clones from its (multi-threaded, tokio)
//! process: each instance has a helper process, forked by the fork server
//! (`crate::forkserver`, started by [`crate::init`]) or, without one, the host binary
//! re-executed with [`HELPER_ENV`] set, which [`crate::init`] — the one line a host puts
//! first in `main` — turns into the helper. The helper clones the namespaced child (which
//! creates its own network namespace while the helper writes its id maps), puts it in its
//! cgroups, forwards stop requests and signals, and reports `started` / `exited` events
//! as JSON lines over its socket.

use crate::cgroup::Cgroups;
use crate::container;
use crate::spec::InstanceSpec;
use crate::{sys, Exit, IdMap};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Environment variable that selects the helper role of a re-executed host binary.
pub const HELPER_ENV: &str = "LANDSCAPE_RUNTIME_HELPER";

/// What the host asks the helper to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
    pub id: String,
    pub spec: InstanceSpec,
    pub idmap: IdMap,
    pub staging: PathBuf,
    pub cgroups: Option<Cgroups>,
    pub keep_stdin: bool,
    /// The instance outlives its host (see [`crate::InstanceSpec::durable`]).
    #[serde(default)]
    pub durable: Option<Durable>,
    /// Parked ([`crate::Runtime::park`]): set the instance up, report `Parked`, then wait
    /// for an `assign SPEC` line and exec that spec's command.
    #[serde(default)]
    pub parked: bool,
}

/// Where a durable instance's helper waits for a new host, and the named pipes of its
/// output (the helper keeps a read end of each open, so that the command's writes do not
/// fail while no host reads them; the pipes buffer up to 64 KiB each meanwhile).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Durable {
    pub socket: PathBuf,
    pub fifos: Vec<PathBuf>,
}

/// Where events go: the host's connection (replaced when a new host adopts the
/// instance); `None` while no host is connected.
static EMIT: std::sync::Mutex<Option<UnixStream>> = std::sync::Mutex::new(None);

/// A durable helper's listening socket (see [`Durable`]).
static LISTENER: std::sync::Mutex<Option<std::os::unix::net::UnixListener>> =
    std::sync::Mutex::new(None);

fn send_event(ev: &Event) -> bool {
    let mut g = EMIT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = g.as_mut() else {
        return false;
    };
    match serde_json::to_string(ev) {
        Ok(mut line) => {
            line.push('\n');
            s.write_all(line.as_bytes()).is_ok()
        }
        Err(_) => false,
    }
}

/// The file a durable helper leaves its instance's exit in when no host is connected.
pub(crate) fn exit_file(socket: &std::path::Path) -> PathBuf {
    socket.with_extension("exit")
}

/// What the helper reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Event {
    /// Set up (namespaces, root, network) and waiting for its command.
    Parked {
        pid: i32,
    },
    Started {
        pid: i32,
    },
    Exited(Exit),
}

/// The helper entry hook; see [`crate::init`].
pub(crate) fn maybe_run() {
    match std::env::var_os(HELPER_ENV) {
        None => return,
        Some(role) if role == "network" => crate::network::holder_main(),
        Some(_) => {}
    }
    std::process::exit(helper_main());
}

fn helper_main() -> i32 {
    let stdin = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(_) => return 2,
    };
    let sock = UnixStream::from(stdin);
    // The host first hands over the instance's stdout and stderr (so that a pre-started
    // helper can serve any output), then the request line.
    match sys::recv_fds(&sock) {
        Ok(fds) if fds.len() == 2 => {
            if nix::unistd::dup2_stdout(&fds[0]).is_err()
                || nix::unistd::dup2_stderr(&fds[1]).is_err()
            {
                return 2;
            }
        }
        // The runtime went away before using this pre-started helper.
        _ => return 0,
    }
    serve(sock)
}

/// Serves one instance on `sock` (stdout and stderr are already the instance's): reads
/// the request line, runs the instance, reports its events. Returns the exit code.
pub(crate) fn serve(sock: UnixStream) -> i32 {
    let Ok(write_half) = sock.try_clone() else {
        return 2;
    };
    let mut reader = BufReader::new(sock);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return 2;
    }
    *EMIT.lock().unwrap_or_else(|e| e.into_inner()) = Some(write_half);
    let mut emit = |ev: &Event| {
        let _ = send_event(ev);
    };
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            emit(&Event::Exited(Exit::failed(format!(
                "bad helper request: {e}"
            ))));
            return 2;
        }
    };
    let leftover = reader.buffer().to_vec();
    let control = Control {
        fd: reader.into_inner().into(),
        buf: leftover,
    };
    // Durable: listen for a new host and hold the output pipes open.
    let mut held = Vec::new();
    if let Some(d) = &req.durable {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let _ = std::fs::remove_file(&d.socket);
        let _ = std::fs::remove_file(exit_file(&d.socket));
        match std::os::unix::net::UnixListener::bind(&d.socket) {
            Ok(l) => {
                let _ = std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o600));
                let _ = l.set_nonblocking(true);
                *LISTENER.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
            }
            Err(e) => {
                emit(&Event::Exited(Exit::failed(format!(
                    "listen on {}: {e}",
                    d.socket.display()
                ))));
                return 2;
            }
        }
        for f in &d.fifos {
            if let Ok(r) = std::fs::File::options()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(f)
            {
                held.push(r);
            }
        }
    }
    let exit = supervise(&req, Some(control), &mut emit);
    // The instance is gone: its output ends here. This process holds the last write ends of
    // the output pipes (its stdout and stderr), so the host's log readers see the end now,
    // not once the veth pair below is removed (tens of milliseconds).
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let ev = Event::Exited(exit);
    if !send_event(&ev) {
        if let Some(d) = &req.durable {
            // Nobody to tell: the next host finds the exit here.
            if let Ok(text) = serde_json::to_string(&ev) {
                let _ = std::fs::write(exit_file(&d.socket), text);
            }
        }
    }
    if let Some(d) = &req.durable {
        let _ = std::fs::remove_file(&d.socket);
    }
    drop(held);
    teardown();
    0
}

/// The host's end of the helper protocol, as seen by the helper.
pub(crate) struct Control {
    fd: OwnedFd,
    buf: Vec<u8>,
}

/// Runs one instance to completion from the calling (single-threaded) process; emits
/// `Started`, returns the exit (the caller emits it).
pub(crate) fn supervise(
    req: &Request,
    mut control: Option<Control>,
    emit: &mut dyn FnMut(&Event),
) -> Exit {
    if sys::thread_count() != 1 {
        return Exit::failed(
            "the fork path must run in a single-threaded process; call landscape_runtime::init() first in main and use Runtime::spawn".into(),
        );
    }
    // Every instance mounts its private tmpfs on the same directory: the mount exists only
    // in the instance's own mount namespace, so instances never see each other's.
    if let Err(e) = ensure_dir(&req.staging) {
        return Exit::failed(format!(
            "create the mount point {}: {e}",
            req.staging.display()
        ));
    }
    supervise_inner(req, control.as_mut(), emit)
}

fn supervise_inner(
    req: &Request,
    control: Option<&mut Control>,
    emit: &mut dyn FnMut(&Event),
) -> Exit {
    if let Some(cg) = &req.cgroups {
        if let Err(e) = cg.create(&req.spec.limits.unwrap_or_default()) {
            let _ = cg.remove();
            return Exit::failed(e.to_string());
        }
    }
    let exit = run_child(req, control, emit);
    match &req.cgroups {
        Some(cg) => {
            let mut exit = exit;
            exit.oom_killed = cg.oom_killed();
            // Removed once init has left them ([`teardown`], after the exit is reported).
            leftover().cgroups = Some((cg.clone(), req.id.clone()));
            exit
        }
        None => exit,
    }
}

/// What is left of the instance that has just ended once its exit has been reported (its
/// init is reaped), for [`teardown`].
struct Leftover {
    /// Its mount namespace, held so that init's exit did not wait for the kernel to
    /// unmount the instance's root (RCU grace periods, 0.3–0.4 ms).
    mounts: Option<OwnedFd>,
    /// Its cgroups and its id.
    cgroups: Option<(Cgroups, String)>,
    /// The bridge end of its veth pair: netlink socket (in the landscape network), the
    /// veth's name, the instance id.
    veth: Option<(crate::netlink::Netlink, String, String)>,
}

static LEFTOVER: std::sync::Mutex<Leftover> = std::sync::Mutex::new(Leftover {
    mounts: None,
    cgroups: None,
    veth: None,
});

fn leftover() -> std::sync::MutexGuard<'static, Leftover> {
    LEFTOVER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Releases what is left of the instance that has just ended, after its exit has been
/// reported: its mount namespace (the kernel unmounts its root now), its cgroups (init
/// has left them) and its veth pair.
pub(crate) fn teardown() {
    let Leftover {
        mounts,
        cgroups,
        veth,
    } = std::mem::replace(
        &mut *leftover(),
        Leftover {
            mounts: None,
            cgroups: None,
            veth: None,
        },
    );
    drop(mounts);
    if let Some((cg, id)) = cgroups {
        if let Err(e) = cg.remove() {
            tracing::warn!(instance = %id, "{e}");
        }
    }
    if let Some((mut nl, veth, id)) = veth {
        if let Err(e) = nl.delete(&veth) {
            tracing::warn!(instance = %id, "remove veth {veth}: {e}");
        }
    }
}

fn run_child(req: &Request, control: Option<&mut Control>, emit: &mut dyn FnMut(&Event)) -> Exit {
    let seccomp = if req.spec.no_seccomp {
        None
    } else {
        match crate::seccomp::default_program() {
            Ok(f) => Some(f),
            Err(e) => return Exit::failed(e),
        }
    };
    // Read once here, inherited by the instance's processes (which drop capabilities).
    sys::last_cap();
    let mask = container::handled_signals();
    let mut old = nix::sys::signal::SigSet::empty();
    if let Err(e) = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&mask),
        Some(&mut old),
    ) {
        return Exit::failed(format!("block signals: {e}"));
    }
    let result = run_child_blocked(req, control, emit, seccomp);
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&old), None);
    result
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Exit> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Exit::failed(format!("create pipe: {e}")))
}

/// A pipe when `wanted`, else none.
fn pipe_if(wanted: bool) -> Result<(Option<OwnedFd>, Option<OwnedFd>), Exit> {
    if !wanted {
        return Ok((None, None));
    }
    pipe().map(|(r, w)| (Some(r), Some(w)))
}

fn run_child_blocked(
    req: &Request,
    mut control: Option<&mut Control>,
    emit: &mut dyn FnMut(&Event),
    seccomp: Option<&seccompiler::BpfProgram>,
) -> Exit {
    let sfd = match SignalFd::with_flags(&container::handled_signals(), SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => return Exit::failed(format!("signalfd: {e}")),
    };
    // Joining a landscape network: enter its namespaces first (the instance's user and
    // network namespaces then nest under the network's when unprivileged) and keep a
    // netlink socket there for the instance's veth pair.
    let mut net = match &req.spec.network {
        Some(att) => match enter_network(att) {
            Ok(n) => Some(n),
            Err(e) => return Exit::failed(e),
        },
        None => None,
    };
    // Attached instances only: the instance writes one byte once its network namespace
    // exists; this process answers on the second pipe once the veth pair is there (created
    // while the instance builds its root filesystem).
    let (net_r, net_w) = match pipe_if(net.is_some()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (netgo_r, netgo_w) = match pipe_if(net.is_some()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (go_r, go_w) = match pipe() {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (rep_r, rep_w) = match pipe() {
        Ok(p) => p,
        Err(e) => return e,
    };
    // Written by the instance's init once the command has been exec'd inside the
    // instance's namespaces and root (or has failed to start).
    let (ready_r, ready_w) = match pipe() {
        Ok(p) => p,
        Err(e) => return e,
    };
    // Parked instances: the spec they are handed out with.
    let (assign_r, assign_w) = match pipe_if(req.parked) {
        Ok(p) => p,
        Err(e) => return e,
    };
    // The network namespace is not created by this clone: the child creates it first
    // thing (it has every capability in its new user namespace, with or without id maps),
    // while this process writes its id maps.
    let app_tree = match app_tree(req) {
        Ok(t) => t,
        Err(e) => return Exit::failed(e),
    };
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC;
    let pid = match sys::clone_into_namespaces(flags) {
        Ok(sys::Forked::Child) => {
            drop(go_w);
            drop(rep_r);
            drop(ready_r);
            drop(net_r);
            drop(netgo_w);
            drop(assign_w);
            drop(sfd);
            let net = container::NetPipes {
                ready: net_w,
                go: netgo_r,
            };
            container::child_main(req, go_r, rep_w, ready_w, net, assign_r, seccomp, app_tree)
        }
        Ok(sys::Forked::Parent(pid)) => Pid::from_raw(pid),
        Err(e) => {
            return Exit::failed(format!(
                "cannot create the instance's namespaces (user, mount, pid, uts, ipc, net): {e}; \
                 check that unprivileged user namespaces are enabled (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)"
            ))
        }
    };
    // Held until the exit is reported: the kernel then unmounts the instance's root here,
    // not in init's exit (which the exit report waits for).
    if let Ok(ns) = File::open(format!("/proc/{}/ns/mnt", pid.as_raw())) {
        leftover().mounts = Some(ns.into());
    }
    drop(go_r);
    drop(rep_w);
    drop(ready_w);
    drop(net_w);
    drop(netgo_r);
    drop(assign_r);
    drop(app_tree);
    let kill_child = |why: String| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        Exit::failed(why)
    };
    let nested = req.spec.network.as_ref().is_some_and(|a| a.nested);
    let maps = if nested {
        // The parent user namespace is the network's, where the runtime's uid is 0.
        let u = req.spec.user;
        Ok((format!("{} 0 1\n", u.uid), format!("{} 0 1\n", u.gid), true))
    } else {
        req.idmap.maps(req.spec.user)
    };
    let maps = match maps {
        Ok(m) => m,
        Err(e) => return kill_child(e.to_string()),
    };
    let proc_dir = format!("/proc/{}", pid.as_raw());
    if maps.2 {
        if let Err(e) = std::fs::write(format!("{proc_dir}/setgroups"), "deny") {
            return kill_child(format!("write setgroups: {e}"));
        }
    }
    if let Err(e) = std::fs::write(format!("{proc_dir}/uid_map"), &maps.0) {
        return kill_child(format!("write uid_map {:?}: {e}", maps.0.trim()));
    }
    if let Err(e) = std::fs::write(format!("{proc_dir}/gid_map"), &maps.1) {
        return kill_child(format!("write gid_map {:?}: {e}", maps.1.trim()));
    }
    if let Some(cg) = &req.cgroups {
        if let Err(e) = cg.add(pid.as_raw()) {
            return kill_child(e.to_string());
        }
    }
    // The id maps are written and the cgroups joined: the instance builds its root
    // filesystem while this process attaches it to its network.
    let mut go = File::from(go_w);
    if go.write_all(b"g").is_err() {
        return kill_child("the instance's init died before starting".into());
    }
    drop(go);
    if let (Some((nl, bridge)), Some(att), Some(r), Some(w)) =
        (&mut net, &req.spec.network, net_r, netgo_w)
    {
        let mut b = [0u8; 1];
        if !matches!(File::from(r).read(&mut b), Ok(1)) {
            // It failed before its network namespace existed: its report says why.
            let _ = waitpid(pid, None);
            let mut report = String::new();
            let _ = File::from(rep_r).read_to_string(&mut report);
            return Exit::failed(
                report
                    .lines()
                    .find_map(|l| l.strip_prefix('E'))
                    .unwrap_or("the instance's init died before its network was attached")
                    .to_string(),
            );
        }
        // The MAC follows from the address (as the bridge's does): a replica restarted at
        // the address of its predecessor is reached at once, without waiting for the
        // neighbour caches of the bridge and the other instances to expire.
        let o = att.address.octets();
        let mac = [0x02, 0x4c, o[0], o[1], o[2], o[3]];
        if let Err(e) = nl.add_veth(&att.veth, *bridge, "eth0", mac, pid.as_raw(), att.mtu) {
            return kill_child(format!(
                "attach to the landscape network ({}): {e}",
                att.address
            ));
        }
        if File::from(w).write_all(b"v").is_err() {
            return kill_child("the instance's init died before its network was attached".into());
        }
    }
    // `Started` only once the command runs inside the instance (namespaces, root
    // filesystem and network ready): one byte from init, or end of file if it died first.
    let mut ready = File::from(ready_r);
    let read_byte = |ready: &mut File| {
        let mut byte = [0u8; 1];
        loop {
            match ready.read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(1) => return Some(byte[0]),
                _ => return None,
            }
        }
    };
    let first = read_byte(&mut ready);
    // Parked: set up and waiting; the host hands it out with `assign SPEC` (anything else,
    // or the host going away, releases it). A setup failure skips this: the exit reports it.
    if let (Some(b'p'), Some(w)) = (first, assign_w) {
        emit(&Event::Parked { pid: pid.as_raw() });
        let line = control.as_deref_mut().and_then(read_control_line);
        match line.as_deref().and_then(|l| l.strip_prefix("assign ")) {
            Some(spec) => {
                let mut w = File::from(w);
                if w.write_all(spec.as_bytes()).is_err() {
                    return kill_child("the parked instance's init died".into());
                }
            }
            None => return kill_child("released from the pool unused".into()),
        }
        let _ = read_byte(&mut ready);
    }
    drop(ready);
    emit(&Event::Started { pid: pid.as_raw() });

    // The report pipe is read once the instance's init has exited: it carries two short
    // lines at most (far below a pipe's capacity), and not polling it saves this process
    // a wake-up per instance (the command's status arrives just before init exits).
    let mut report = Vec::new();
    let mut kill_at: Option<Instant> = None;
    // The connection of a host that adopted the instance after the first one went away.
    let mut adopted: Option<Control> = None;
    let listener = LISTENER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|l| l.try_clone().ok());
    let status = loop {
        let timeout = match kill_at {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                    .unwrap_or(PollTimeout::NONE)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let ctl_index = fds.len();
        let mut listen_index = None;
        if let Some(c) = adopted.as_ref().or(control.as_deref()) {
            fds.push(PollFd::new(c.fd.as_fd(), PollFlags::POLLIN));
        } else if let Some(l) = &listener {
            listen_index = Some(fds.len());
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        let pending_cmds = adopted
            .as_ref()
            .or(control.as_deref())
            .is_some_and(|c| c.buf.contains(&b'\n'));
        let ready = if pending_cmds {
            0
        } else {
            poll(&mut fds, timeout).unwrap_or(0)
        };
        let revents: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready == 0 && !pending_cmds {
            if kill_at.is_some_and(|t| Instant::now() >= t) {
                thaw(req);
                let _ = kill(pid, Signal::SIGKILL);
                kill_at = None;
            }
            continue;
        }
        if revents[0] {
            if let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) | Err(_) => {}
                    Ok(sig) => {
                        let _ = kill(pid, sig);
                    }
                }
            }
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => {}
                Ok(st) => break st,
            }
        }
        if let (Some(i), Some(l)) = (listen_index, &listener) {
            if revents.get(i).copied().unwrap_or(false) {
                if let Ok((s, _)) = l.accept() {
                    if let Some(c) = adopt_host(s, pid) {
                        adopted = Some(c);
                    }
                }
                continue;
            }
        }
        let mut eof = false;
        if let Some(c) = adopted.as_mut().or(control.as_deref_mut()) {
            if revents.get(ctl_index).copied().unwrap_or(false) {
                let mut buf = [0u8; 512];
                match nix::unistd::read(&c.fd, &mut buf) {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => c.buf.extend_from_slice(&buf[..n]),
                }
            }
            while let Some(nl) = c.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = c.buf.drain(..=nl).collect();
                let cmd = String::from_utf8_lossy(&line).trim().to_string();
                let mut words = cmd.split_whitespace();
                match (
                    words.next(),
                    words.next().and_then(|w| w.parse::<u64>().ok()),
                ) {
                    (Some("stop"), grace) => {
                        freeze(req, pid, false);
                        let _ = kill(pid, Signal::SIGTERM);
                        let deadline =
                            Instant::now() + Duration::from_millis(grace.unwrap_or(10_000));
                        kill_at = Some(kill_at.map_or(deadline, |k| k.min(deadline)));
                    }
                    (Some("kill"), _) => {
                        freeze(req, pid, false);
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                    (Some("freeze"), _) => freeze(req, pid, true),
                    (Some("thaw"), _) => freeze(req, pid, false),
                    (Some("signal"), Some(n)) => {
                        if let Ok(sig) = Signal::try_from(n as i32) {
                            let _ = kill(pid, sig);
                        }
                    }
                    _ => tracing::warn!(instance = %req.id, "unknown helper command {cmd:?}"),
                }
            }
        }
        if eof {
            *EMIT.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if listener.is_some() {
                // Durable: the instance goes on; a new host may adopt it.
                if adopted.take().is_none() {
                    control = None;
                }
            } else {
                // The host is gone: nobody can stop the instance any more.
                freeze(req, pid, false);
                let _ = kill(pid, Signal::SIGKILL);
                control = None;
            }
        }
    };
    let _ = File::from(rep_r).read_to_end(&mut report);
    // The bridge end of the veth pair: deleting it removes the pair now rather than when
    // the kernel gets round to the instance's dead network namespace. The kernel takes
    // tens of milliseconds for it, so it is done once the exit has been reported
    // ([`teardown`]); veth names are unique per attachment, so the next instance at this
    // address does not wait for it.
    if let (Some((nl, _)), Some(att)) = (net.take(), &req.spec.network) {
        leftover().veth = Some((nl, att.veth.clone(), req.id.clone()));
    }
    let mut exit = Exit::default();
    for line in String::from_utf8_lossy(&report).lines() {
        if let Some(msg) = line.strip_prefix('E') {
            exit.error = Some(msg.to_string());
        } else if let Some(st) = line.strip_prefix('S') {
            let mut it = st.split(' ').map(|v| v.parse::<i32>().unwrap_or(0));
            let (code, sig) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            if sig != 0 {
                exit.signal = Some(sig);
            } else {
                exit.code = Some(code);
            }
        }
    }
    if exit.code.is_none() && exit.signal.is_none() {
        match status {
            WaitStatus::Signaled(_, s, _) => exit.signal = Some(s as i32),
            WaitStatus::Exited(_, c) => {
                if exit.error.is_none() {
                    exit.error = Some(format!(
                        "the instance's init exited with {c} before the command ran"
                    ));
                }
                exit.code = Some(if c == 0 { 1 } else { c });
            }
            _ => exit.signal = Some(libc::SIGKILL),
        }
    }
    exit
}

/// The next command line from the host (blocking); `None` when it went away.
fn read_control_line(c: &mut Control) -> Option<String> {
    loop {
        if let Some(nl) = c.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = c.buf.drain(..=nl).collect();
            return Some(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(&c.fd, &mut buf) {
            Ok(0) => return None,
            Ok(n) => c.buf.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Enters the namespaces of the landscape network described by `att` (checking that the
/// holder's pid still names the same network) and opens a netlink socket there; returns it
/// with the bridge's interface index.
fn enter_network(
    att: &crate::network::Attachment,
) -> Result<(crate::netlink::Netlink, u32), String> {
    use nix::sched::{setns, CloneFlags};
    use std::os::unix::fs::MetadataExt;
    let pid = att.holder_pid;
    let gone = |e: std::io::Error| {
        format!("the landscape network (holder pid {pid}) is not running: {e}; create the network again")
    };
    let net = File::open(format!("/proc/{pid}/ns/net")).map_err(gone)?;
    if net.metadata().map_err(gone)?.ino() != att.netns_inode {
        return Err(format!(
            "the landscape network (holder pid {pid}) is not running (the pid now belongs to another process); create the network again"
        ));
    }
    if att.nested {
        let user = File::open(format!("/proc/{pid}/ns/user")).map_err(gone)?;
        setns(&user, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("enter the landscape network's user namespace: {e}"))?;
    }
    setns(&net, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("enter the landscape network: {e}"))?;
    let mut nl =
        crate::netlink::Netlink::open().map_err(|e| format!("landscape network netlink: {e}"))?;
    let bridge = nl
        .index(crate::network::BRIDGE)
        .map_err(|e| format!("landscape network: {e}"))?;
    Ok((nl, bridge))
}

/// A new host connected to a durable helper: it sends `adopt`; the helper answers with
/// `Started` (the instance's pid) and reports to it from now on.
fn adopt_host(s: UnixStream, pid: Pid) -> Option<Control> {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || line.trim() != "adopt" {
        return None;
    }
    let buf = r.buffer().to_vec();
    let s = r.into_inner();
    let _ = s.set_read_timeout(None);
    let w = s.try_clone().ok()?;
    *EMIT.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
    if !send_event(&Event::Started { pid: pid.as_raw() }) {
        return None;
    }
    Some(Control { fd: s.into(), buf })
}

/// Freezes (or thaws) every process of the instance whose init is `init`: with the
/// cgroup freezer where the instance has cgroups (memory kept, nothing runs), otherwise
/// (unprivileged, no delegated cgroups) by SIGSTOP/SIGCONT to every process in the
/// instance's pid namespace but its init (which keeps reaping), repeated until no new
/// process turns up (a fork racing the walk is caught by the next round).
fn freeze(req: &Request, init: Pid, frozen: bool) {
    // Whether this helper's instance is frozen (a thaw before a stop is then needed).
    static FROZEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let was = FROZEN.swap(frozen, std::sync::atomic::Ordering::SeqCst);
    if let Some(cg) = &req.cgroups {
        // Always: the host may also have used the freezer directly (Instance::freeze).
        if let Err(e) = cg.freeze(frozen) {
            tracing::warn!(instance = %req.id, "freezer: {e}");
        }
        return;
    }
    if was == frozen {
        return;
    }
    let sig = if frozen {
        Signal::SIGSTOP
    } else {
        Signal::SIGCONT
    };
    let mut done = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let mut new = 0;
        for p in sys::pids_in_namespace_of(init.as_raw()).unwrap_or_default() {
            if p != init.as_raw() && done.insert(p) {
                let _ = kill(Pid::from_raw(p), sig);
                new += 1;
            }
        }
        if new == 0 {
            break;
        }
    }
}

/// Thaws the instance's cgroup before it is signalled: a process frozen by the cgroup v1
/// freezer does not act on signals, not even SIGKILL (the v2 freezer lets SIGKILL through).
fn thaw(req: &Request) {
    if let Some(cg) = &req.cgroups {
        cg.thaw_now();
    }
}

/// Creates the runtime's state directory when it is missing (it is kept afterwards:
/// removing it cost a synchronous discard on every drop); 0711: the mapped ids must
/// traverse it to reach the mount point.
fn ensure_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
}

/// Root mode: the instance's app directory as a detached idmapped mount
/// ([`sys::idmapped_tree`]) in which the directory's owner shows as the container user, and
/// what the instance creates is stored under the owner's ids: the host's checkout keeps
/// its owner (host root is unmapped inside the instance, so a plain bind would leave it
/// read-only there). For a directory of host root's (owner or group), which must not
/// receive files of host root's from the instance (a set-uid binary, say), and where the
/// kernel or the filesystem cannot idmap, the tree is handed to the container user's host
/// ids instead ([`crate::Runtime::adopt_dir`]) and bound plainly (`None`). Unprivileged
/// (the container user is the runtime's own uid) and without an app directory: `None`.
fn app_tree(req: &Request) -> Result<Option<OwnedFd>, String> {
    use std::os::unix::fs::MetadataExt;
    let (crate::IdMap::Range { .. }, Some(app)) = (&req.idmap, &req.spec.app_dir) else {
        return Ok(None);
    };
    if req.spec.network.as_ref().is_some_and(|a| a.nested) {
        return Ok(None);
    }
    let user = req.spec.user;
    let (Some(uid), Some(gid)) = (
        req.idmap.host_uid(user.uid, user.uid),
        req.idmap.host_gid(user.gid, user.gid),
    ) else {
        return Ok(None);
    };
    let meta =
        std::fs::metadata(app).map_err(|e| format!("app directory {}: {e}", app.display()))?;
    // Never for a directory of host root's (owner or group): what the instance creates
    // would be host root's, set-uid bits included.
    let tree = if meta.uid() == 0 || meta.gid() == 0 {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    } else {
        sys::user_namespace(
            &format!("{} {uid} 1\n", meta.uid()),
            &format!("{} {gid} 1\n", meta.gid()),
        )
        .and_then(|ns| sys::idmapped_tree(app, ns.as_fd()))
    };
    match tree {
        Ok(t) => Ok(Some(t)),
        Err(_) => {
            crate::instance::hand_over_tree(app, Some(uid), Some(gid))
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
    }
}
