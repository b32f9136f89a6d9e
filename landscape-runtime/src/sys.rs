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

/// Like [`recv_fds`], also returning the message's bytes (up to 512; a sender without
/// descriptors to give explains why in them).
pub(crate) fn recv_fds_and_text(
    sock: &impl std::os::fd::AsRawFd,
) -> io::Result<(Vec<std::os::fd::OwnedFd>, Vec<u8>)> {
    let mut buf = [0u8; 512];
    let (fds, n) = recv_msg(sock, &mut buf)?;
    Ok((fds, buf[..n].to_vec()))
}

fn recv_msg(
    sock: &impl std::os::fd::AsRawFd,
    buf: &mut [u8],
) -> io::Result<(Vec<std::os::fd::OwnedFd>, usize)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
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
