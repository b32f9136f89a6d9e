//! The only place with `unsafe`: thin wrappers around the few system calls that `nix` does
//! not expose safely (clone with namespace flags, fork, capabilities, interface flags,
//! close_range, _exit). Every block states why it is sound.

use std::io;

/// Result of [`clone_into_namespaces`] / [`fork`].
pub(crate) enum Forked {
    /// We are the parent; the child has this (host) pid.
    Parent(i32),
    /// We are the child.
    Child,
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `clone(flags | SIGCHLD)` without a new stack: behaves like `fork(2)` but creates the
/// namespaces in `flags` for the child. The caller must be single-threaded (checked by the
/// callers through [`thread_count`]), like for `fork`.
pub(crate) fn clone_into_namespaces(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: with a NULL stack the raw clone syscall duplicates the calling thread like
    // fork(2) does; the process is single-threaded (the helper or a checked caller), so no
    // lock held by another thread can be inherited in a locked state. Pointer arguments are
    // NULL, which the kernel accepts for parent_tid/child_tid/tls when the matching
    // CLONE_*TID/SETTLS flags are absent (they are never passed here).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            0 as libc::c_ulong,
        )
    };
    match check(rc)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// `fork(2)`; the caller must be single-threaded.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: only called from single-threaded processes (the container init, pid 1 of
    // the instance, and the helper, which checks its thread count before cloning), so the
    // child cannot inherit locks held by other threads.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent(child.as_raw())),
        Err(e) => Err(e.into()),
    }
}

/// The stack of a process cloned with `CLONE_VM` ([`vfork_exec`], [`user_namespace`]): an
/// anonymous private mapping, unmapped when dropped — which the owner does only once the
/// child no longer runs on it.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    fn new(len: usize) -> io::Result<ChildStack> {
        // SAFETY: a fresh anonymous private mapping (no file, no fixed address); the result
        // is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(ChildStack { base, len })
    }

    /// The top of the stack (it grows down; 16-byte aligned, as the mapping is
    /// page-aligned).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, a valid pointer to form.
        unsafe { (self.base as *mut u8).add(self.len) as *mut libc::c_void }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; its owner drops it only once no child runs on
        // it.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Runs `f` in a new process that shares the caller's memory until it calls execve or
/// exits (`clone(CLONE_VM | CLONE_VFORK)` on a stack of its own, as `posix_spawn` does);
/// returns the process's pid once it has done either (the caller is suspended until
/// then). `f` must only make system calls on data prepared beforehand: no allocation, no
/// locks, no panics. The caller must be single-threaded.
pub(crate) fn vfork_exec(f: &mut dyn FnMut() -> i32) -> io::Result<i32> {
    const STACK: usize = 256 * 1024;
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points to the `&mut dyn FnMut` below, which lives until `clone`
        // returns in the parent, and the parent is suspended until this process has
        // called execve or exited.
        let f = unsafe { &mut *(arg as *mut &mut dyn FnMut() -> i32) };
        f()
    }
    let stack = ChildStack::new(STACK)?;
    let mut f = f;
    // SAFETY: the stack grows down from the end of the mapping (16-byte aligned, as the
    // mapping is page-aligned); the new process runs `trampoline` on it with the pointer
    // to `f`. CLONE_VFORK suspends this process until the child has called execve or
    // exited, so neither the stack nor `f` is used concurrently or after the stack is
    // dropped below. Without CLONE_FILES/FS/SIGHAND/THREAD the child has its own
    // descriptors, working directory, signal handlers, credentials and limits.
    let pid = unsafe {
        libc::clone(
            trampoline,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut f as *mut &mut dyn FnMut() -> i32 as *mut libc::c_void,
        )
    };
    let err = io::Error::last_os_error();
    // No longer used by the child (see above).
    drop(stack);
    if pid < 0 {
        Err(err)
    } else {
        Ok(pid)
    }
}

/// Gives every signal its default action (a command must not inherit ignored signals,
/// such as the Rust runtime's SIGPIPE or real-time signals ignored by whoever started the
/// host), then unblocks every signal.
pub(crate) fn reset_signals() {
    /// The kernel's `struct sigaction` (x86_64 and aarch64 layout).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: rt_sigaction reads one kernel sigaction through a valid pointer
            // (the C library's wrapper refuses its reserved real-time signals, so the
            // system call is made directly); no old action is returned.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                )
            };
        }
    }
    // SAFETY: sigemptyset on a local sigset_t, sigprocmask through valid pointers; no
    // handler of the parent can run any more (dispositions were reset first).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Sets both limits of `resource` to `value` (errors ignored: best effort).
pub(crate) fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads the struct through a valid pointer.
    unsafe { libc::setrlimit(resource, &lim) };
}

/// `setgroups(2)` as a direct system call (no C-library thread broadcast: the caller may
/// be a process sharing its parent's memory).
pub(crate) fn set_groups(gids: &[u32]) -> io::Result<()> {
    // SAFETY: setgroups reads `gids.len()` gid_t values through a valid pointer.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) };
    check(rc).map(|_| ())
}

/// `setresuid(id, id, id)` or `setresgid(id, id, id)` (`call`) as a direct system call.
pub(crate) fn set_ids(call: libc::c_long, id: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::syscall(call, id, id, id) };
    check(rc).map(|_| ())
}

/// `execve(2)` with NULL-terminated pointer arrays; returns only on failure (errno set).
pub(crate) fn execve(
    path: &std::ffi::CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) {
    if argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null()) {
        // SAFETY: both arrays are NULL-terminated (checked) and point to NUL-terminated
        // strings owned by the caller for the duration of the call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    }
}

/// Moves `fd` to descriptor 3 and closes every other descriptor above 2 (the fork
/// server keeps nothing of its host but its socket).
pub(crate) fn keep_only_fd(fd: std::os::fd::OwnedFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let kept = if fd.as_raw_fd() == 3 {
        fd
    } else {
        // SAFETY: dup3 with two descriptor numbers; whatever was at 3 is replaced (and
        // would be closed below anyway).
        let rc = unsafe { libc::dup3(fd.as_raw_fd(), 3, libc::O_CLOEXEC) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(fd);
        // SAFETY: descriptor 3 is the duplicate just made; nothing else in this process
        // (a freshly forked server that never returns) owns it.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(3) }
    };
    // SAFETY: close_range with integer arguments; closes descriptors nothing here uses.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 4u32, libc::c_uint::MAX, 0u32) };
    check(rc).map(|_| kept)
}

/// Ignores SIGCHLD (`true`: exited children are reaped by the kernel) or restores its
/// default action.
pub(crate) fn ignore_sigchld(ignore: bool) {
    let action = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: signal() with a valid signal number and SIG_IGN/SIG_DFL (no handler).
    unsafe { libc::signal(libc::SIGCHLD, action) };
}

/// `d` as a poll timeout (whole milliseconds, at most `PollTimeout::MAX`).
pub(crate) fn poll_timeout(d: std::time::Duration) -> nix::poll::PollTimeout {
    let ms = d.as_millis().min(i32::MAX as u128) as i32;
    nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX)
}

/// Waits at most `timeout` for the exit of `pid`, a child of this process, and reaps it:
/// a pidfd polled for the exit (Linux 5.3+), else `waitpid(WNOHANG)` every millisecond.
/// True when it was reaped (or is no longer this process's child).
pub(crate) fn wait_child_exit(pid: i32, timeout: std::time::Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use std::os::fd::AsFd;
    let p = nix::unistd::Pid::from_raw(pid);
    let deadline = std::time::Instant::now() + timeout;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    let pidfd = (pidfd >= 0).then(|| {
        // SAFETY: a descriptor just returned by pidfd_open, owned by nothing else.
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) }
    });
    loop {
        match waitpid(p, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) | Err(_) => return true,
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        match &pidfd {
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, poll_timeout(left));
            }
            None => std::thread::sleep(left.min(std::time::Duration::from_millis(1))),
        }
    }
}

/// Number of threads of the calling process (from `/proc/self/status`).
pub(crate) fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(usize::MAX)
}

/// Ends the process immediately without running destructors or atexit handlers (used in
/// forked children).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust-managed state.
    unsafe { libc::_exit(code) }
}

/// Brings the loopback interface of the current network namespace up.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created, valid descriptor nobody else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads a struct ifreq through the pointer, which is valid for the
    // duration of the call.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIOCSIFFLAGS as _,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Highest capability number the running kernel knows (read once per process; the
/// helper reads it before cloning, so instances inherit the value).
pub(crate) fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

/// Drops every capability not in `keep` (a bit mask) from the bounding set, and sets the
/// permitted/effective/inheritable sets to `keep` (ambient cleared).
pub(crate) fn restrict_capabilities(keep: u64) -> io::Result<()> {
    for cap in 0..=last_cap() {
        if keep & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let lo = keep as u32;
    let hi = (keep >> 32) as u32;
    let data = [
        Data {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        Data {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads one header and two data structs (version 3) through valid
    // pointers to properly laid out #[repr(C)] values living for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    check(rc).map(|_| ())
}

/// Marks every descriptor from `first` upwards close-on-exec (nothing is inherited by the
/// command except stdin/stdout/stderr).
pub(crate) fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with integer arguments; CLOSE_RANGE_CLOEXEC only sets flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    check(rc).map(|_| ())
}

/// Receives one message carrying descriptors (SCM_RIGHTS) on `sock`; returns them owned
/// (close-on-exec). An empty vector means the peer closed the socket.
pub(crate) fn recv_fds(sock: &impl std::os::fd::AsRawFd) -> io::Result<Vec<std::os::fd::OwnedFd>> {
    recv_msg(sock, &mut [0u8; 1]).map(|(fds, _)| fds)
}

/// Like [`recv_fds`], for up to [`MAX_FDS`] descriptors in one message.
pub(crate) fn recv_many_fds(
    sock: &impl std::os::fd::AsRawFd,
) -> io::Result<Vec<std::os::fd::OwnedFd>> {
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS]);
    recv_msg_with(sock, &mut [0u8; 1], &mut space).map(|(fds, _)| fds)
}

/// Most descriptors sent in one message by the network holder.
pub(crate) const MAX_FDS: usize = 32;

fn recv_msg(
    sock: &impl std::os::fd::AsRawFd,
    buf: &mut [u8],
) -> io::Result<(Vec<std::os::fd::OwnedFd>, usize)> {
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    recv_msg_with(sock, buf, &mut space)
}

#[allow(clippy::ptr_arg)] // nix's recvmsg takes the control buffer as a Vec
fn recv_msg_with(
    sock: &impl std::os::fd::AsRawFd,
    buf: &mut [u8],
    space: &mut Vec<u8>,
) -> io::Result<(Vec<std::os::fd::OwnedFd>, usize)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let n = msg.bytes;
    let mut out = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: SCM_RIGHTS just installed `fd` in this process; nothing else
                // owns it, so taking ownership here is the only owner.
                out.push(unsafe {
                    <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
                });
            }
        }
    }
    Ok((out, n))
}

/// Sends `fds` over `sock` (SCM_RIGHTS) with a one-byte payload.
pub(crate) fn send_fds(
    sock: &impl std::os::fd::AsRawFd,
    fds: &[std::os::fd::RawFd],
) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(b"f")];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// The processes (host pids) in the pid namespace of `init` (a host pid), `init`
/// included; `None` when `init` is gone.
pub(crate) fn pids_in_namespace_of(init: i32) -> Option<Vec<i32>> {
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).ok()?;
    Some(
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
            .filter(|p| {
                std::fs::read_link(format!("/proc/{p}/ns/pid"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
            })
            .collect(),
    )
}

/// A user namespace whose id maps are `uid_map` and `gid_map` (the contents of
/// `/proc/PID/uid_map` and `gid_map`), as an open descriptor of it: the namespace of an
/// idmapped mount ([`idmapped_tree`]). The caller must hold `CAP_SETUID`/`CAP_SETGID` in
/// the current user namespace (root). A short-lived process is cloned into the new
/// namespace (sharing this process's memory, on a stack of its own, making only two
/// system calls), which exits once the maps are written and the namespace is open; safe
/// in a multi-threaded process, like `posix_spawn`'s child.
pub(crate) fn user_namespace(uid_map: &str, gid_map: &str) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    const STACK: usize = 64 * 1024;
    extern "C" fn hold(arg: *mut libc::c_void) -> libc::c_int {
        let fd = arg as usize as libc::c_int;
        let mut b = 0u8;
        // SAFETY: read(2) of one byte into a local; _exit(2) ends this process without
        // touching the memory it shares with its parent.
        unsafe {
            libc::read(fd, &mut b as *mut u8 as *mut libc::c_void, 1);
            libc::_exit(0)
        }
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let stack = ChildStack::new(STACK)?;
    // SAFETY: the child runs `hold` on the top of the mapping above, which is unmapped
    // only after the child has been reaped (below); `hold` uses nothing but its argument
    // (a descriptor number) and its own stack. Without CLONE_FILES/FS/SIGHAND/THREAD it
    // has its own descriptor table (a copy holding the pipe), credentials and signals.
    let pid = unsafe {
        libc::clone(
            hold,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_NEWUSER | libc::SIGCHLD,
            r.as_raw_fd() as usize as *mut libc::c_void,
        )
    };
    let cloned = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    };
    let result = cloned.and_then(|pid| {
        let proc_ = format!("/proc/{pid}");
        let opened = std::fs::write(format!("{proc_}/uid_map"), uid_map)
            .and_then(|()| std::fs::write(format!("{proc_}/gid_map"), gid_map))
            .and_then(|()| std::fs::File::open(format!("{proc_}/ns/user")));
        // Let it go (a byte, or SIGKILL when the byte cannot be written), then reap it.
        if nix::unistd::write(&w, b"x") != Ok(1) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        while let Err(nix::errno::Errno::EINTR) =
            nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
        {}
        opened.map(std::os::fd::OwnedFd::from)
    });
    // Its only other user, the child, has exited (waitpid returns once it has, also when
    // SIGCHLD is ignored and it is reaped by the kernel), or was never created.
    drop(stack);
    result
}

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` of `path`, made an idmapped mount with the
/// id maps of `userns` (`mount_setattr(MOUNT_ATTR_IDMAP)`, every submount too): a detached
/// copy of the tree in which an id `X` on disk shows as what `X` maps to in `userns`, and
/// files created through it are stored with the reverse mapping. Attach it with
/// [`move_mount`]. Needs Linux 5.12+, a filesystem that supports idmapped mounts (ext4,
/// xfs, btrfs, tmpfs since 6.3, ...) and root; the error says which is missing.
pub(crate) fn idmapped_tree(
    path: &std::path::Path,
    userns: std::os::fd::BorrowedFd<'_>,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    /// The kernel's `struct mount_attr` (version 0, 32 bytes).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open_tree with a NUL-terminated path that lives for the call; the result is
    // a new descriptor owned right below.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        )
    })?;
    // SAFETY: the descriptor open_tree just returned, owned by nothing else.
    let tree = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` (its size passed) through a valid pointer; the
    // empty path is NUL-terminated and static.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(tree)
}

/// Attaches the detached mount `tree` (from [`idmapped_tree`]) at `target`
/// (`move_mount(MOVE_MOUNT_F_EMPTY_PATH)`).
pub(crate) fn move_mount(
    tree: std::os::fd::BorrowedFd<'_>,
    target: &std::path::Path,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let t = std::ffi::CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: move_mount with a descriptor, two NUL-terminated paths living for the
    // call, and flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(|_| ())
}
