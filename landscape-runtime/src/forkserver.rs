//! The fork server: a small single-threaded process that [`crate::init`] forks while the
//! host is still single-threaded (before tokio or any other thread starts). For every
//! [`crate::Runtime::spawn`] the host sends it one message over a `SOCK_SEQPACKET`
//! socket carrying three descriptors (SCM_RIGHTS): the helper's end of a fresh socket
//! pair, and the instance's stdout and stderr. The server forks a helper for the
//! instance, which speaks the usual helper protocol on that socket (request line in,
//! `started` / `exited` events out, stop commands in). Forking this small, already
//! initialised process costs far less than executing the host binary again (no exec, no
//! dynamic loading, no runtime start-up); re-executing remains the fallback when there
//! is no server (the host called [`crate::init_with`] without it, or it died).
//!
//! The server holds no state: every request carries all it needs. It reaps its helpers
//! automatically (SIGCHLD ignored), exits when the host's end of its socket closes, and
//! is killed by the kernel when the host thread that started it exits (`PDEATHSIG`).

use crate::sys;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The host's handle on its fork server.
struct Server {
    sock: OwnedFd,
    pid: i32,
    alive: AtomicBool,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// Starts the fork server unless the process already has threads (then instances are
/// started by re-executing the host binary) or one runs already. Called by
/// [`crate::init_with`].
pub(crate) fn start() {
    if SERVER.get().is_some() || sys::thread_count() != 1 {
        return;
    }
    let Ok((host, server)) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) else {
        return;
    };
    let parent = nix::unistd::getpid();
    match sys::fork() {
        Ok(sys::Forked::Child) => {
            drop(host);
            serve(server, parent)
        }
        Ok(sys::Forked::Parent(pid)) => {
            drop(server);
            // Also from this side (whichever runs first): no window in which a Ctrl-C
            // for the host reaches the server.
            let _ = nix::unistd::setpgid(
                nix::unistd::Pid::from_raw(pid),
                nix::unistd::Pid::from_raw(pid),
            );
            let _ = SERVER.set(Server {
                sock: host,
                pid,
                alive: AtomicBool::new(true),
            });
        }
        Err(_) => {}
    }
}

/// Pid of the running fork server, if this process has one (see the module docs).
pub fn pid() -> Option<i32> {
    SERVER
        .get()
        .filter(|s| s.alive.load(Ordering::Relaxed))
        .map(|s| s.pid)
}

/// Stops the fork server and reaps it (at most `timeout`): its socket is shut down, so it
/// reads EOF and exits. Later spawns re-execute the host binary. True when it is gone
/// (or there was none).
pub(crate) fn stop(timeout: std::time::Duration) -> bool {
    let Some(server) = SERVER.get() else {
        return true;
    };
    if !server.alive.swap(false, Ordering::Relaxed) {
        return true;
    }
    let _ = nix::sys::socket::shutdown(server.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    crate::sys::wait_child_exit(server.pid, timeout)
}

/// Asks the fork server for a helper serving the other end of `helper`, writing the
/// instance's output to `out` and `err`. `Err` when there is no server or it is gone (it
/// is then reaped and marked dead, with a warning; the caller falls back to
/// re-executing the host binary).
pub(crate) fn request(helper: UnixStream, out: RawFd, err: RawFd) -> Result<(), String> {
    let Some(server) = SERVER.get().filter(|s| s.alive.load(Ordering::Relaxed)) else {
        return Err("no fork server".into());
    };
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(server.pid);
    // Still there? (It is this process's child: a dead one is reaped here.)
    let gone = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(status) => Some(format!("it ended ({status:?})")),
        Err(e) => Some(format!("it cannot be waited for ({e})")),
    };
    let gone = match gone {
        Some(why) => Some(why),
        None => {
            let fds = [helper.as_raw_fd(), out, err];
            match sys::send_fds(&server.sock, &fds) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Dead or dying: reap it (returns at once or right after its exit).
                    let _ = waitpid(pid, None);
                    Some(format!("it stopped accepting requests ({e})"))
                }
            }
        }
    };
    let why = gone.unwrap_or_default();
    if server.alive.swap(false, Ordering::Relaxed) {
        tracing::warn!(
            pid = server.pid,
            "the landscape-runtime fork server is gone: {why}; instances are started by re-executing the host binary from now on"
        );
    }
    Err(format!("the fork server is gone: {why}"))
}

/// The server's loop; never returns.
fn serve(sock: OwnedFd, host: nix::unistd::Pid) -> ! {
    // Die with the host (and never outlive a host that exited before this line).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid() != host {
        sys::exit_now(0);
    }
    // A process group of its own, which its helpers and their instances inherit: a Ctrl-C
    // on the host's terminal reaches the host only, which stops its instances with their
    // stop signal (SIGTERM), not with the terminal's SIGINT.
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
    // Nothing of the host's but this socket: stdin/stdout/stderr become /dev/null (each
    // instance brings its own), every other descriptor inherited at start-up is closed.
    if let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let sock = match sys::keep_only_fd(sock) {
        Ok(s) => s,
        Err(_) => sys::exit_now(1),
    };
    // Helpers are reaped by the kernel; each helper restores the default for itself.
    sys::ignore_sigchld(true);
    loop {
        let fds = match sys::recv_fds(&sock) {
            Ok(fds) if fds.is_empty() => sys::exit_now(0), // the host is gone
            Ok(fds) => fds,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(_) => sys::exit_now(1),
        };
        let [helper, out, err] = match <[OwnedFd; 3]>::try_from(fds) {
            Ok(f) => f,
            Err(_) => continue, // malformed request: its descriptors are closed here
        };
        match sys::fork() {
            Ok(sys::Forked::Child) => {
                drop(sock);
                sys::ignore_sigchld(false);
                if nix::unistd::dup2_stdout(out.as_fd()).is_err()
                    || nix::unistd::dup2_stderr(err.as_fd()).is_err()
                {
                    sys::exit_now(2);
                }
                drop((out, err));
                let code = crate::helper::serve(UnixStream::from(helper));
                sys::exit_now(code)
            }
            // The helper has its copies; a failed fork closes the host's socket end,
            // which the host reads as a helper that exited without reporting.
            Ok(sys::Forked::Parent(_)) | Err(_) => drop((helper, out, err)),
        }
    }
}
