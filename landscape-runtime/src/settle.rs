//! Helpers that are still tearing down after their instance's exit was reported.
//!
//! [`crate::Instance::wait`] returns as soon as the helper reports the exit; the helper
//! then releases what it held for the instance (the mount namespace, the cgroups, the
//! veth pair) and exits. A helper forked by the fork server is not this process's child,
//! so nothing would wait for that tear-down: a host that exits right after its last
//! `wait` (`landscape up` after Ctrl-C, `down`) could leave helpers running for a moment,
//! reparented to PID 1 once the fork server dies with the host. Each such helper's socket
//! is kept here when its [`crate::Instance`] is dropped; the helper's exit closes its end
//! (POLLHUP here), and [`settle`] waits for every one.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sockets of helpers whose instance has ended and that may still be tearing down.
static SETTLING: Mutex<Vec<UnixStream>> = Mutex::new(Vec::new());

fn take() -> Vec<UnixStream> {
    std::mem::take(&mut *SETTLING.lock().unwrap_or_else(|e| e.into_inner()))
}

fn put_back(v: Vec<UnixStream>) {
    SETTLING.lock().unwrap_or_else(|e| e.into_inner()).extend(v);
}

/// Polls `socks` for up to `timeout` (zero: a check) and removes those whose helper has
/// exited (its end closed). Returns when none is left or the time is up.
fn reap(socks: &mut Vec<UnixStream>, timeout: Duration) {
    use nix::poll::{poll, PollFd, PollFlags};
    let deadline = Instant::now() + timeout;
    while !socks.is_empty() {
        // Only POLLHUP (always reported) is of interest: a helper may have written more
        // than was read, which must not count as its exit.
        let mut fds: Vec<PollFd> = socks
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::empty()))
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match poll(&mut fds, crate::sys::poll_timeout(left)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        let gone: Vec<bool> = fds
            .iter()
            .map(|f| {
                f.revents().is_some_and(|r| {
                    r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
                })
            })
            .collect();
        drop(fds);
        let mut gone = gone.into_iter();
        socks.retain(|_| !gone.next().unwrap_or(false));
        if n == 0 || Instant::now() >= deadline {
            return;
        }
    }
}

/// Keeps the socket of a forked helper whose instance has ended until that helper exits
/// (those that have already exited are dropped on the way).
pub(crate) fn keep(sock: UnixStream) {
    let mut v = take();
    reap(&mut v, Duration::ZERO);
    v.push(sock);
    put_back(v);
}

/// Waits until every helper of an ended instance has finished its tear-down and exited,
/// at most `timeout`; true when none is left.
pub(crate) fn settle(timeout: Duration) -> bool {
    let mut v = take();
    reap(&mut v, timeout);
    let done = v.is_empty();
    put_back(v);
    done && SETTLING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_counts_as_settled_once_its_peer_closes_and_not_before() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        // Unread data from the peer is not its exit.
        std::io::Write::write_all(&mut &theirs, b"exited\n").unwrap();
        let mut v = vec![ours];
        reap(&mut v, Duration::ZERO);
        assert_eq!(v.len(), 1, "peer still open: not settled");
        drop(theirs);
        reap(&mut v, Duration::from_secs(5));
        assert!(v.is_empty(), "peer closed: settled");
    }

    #[test]
    fn settle_waits_for_a_peer_that_closes_later() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut v = vec![ours];
        let t = std::thread::spawn(move || {
            // The peer closes only after the waiter has seen it open.
            let mut b = [0u8; 1];
            let _ = std::io::Read::read(&mut &theirs, &mut b);
            drop(theirs);
        });
        reap(&mut v, Duration::ZERO);
        assert_eq!(v.len(), 1);
        std::io::Write::write_all(&mut &v[0], b"x").unwrap();
        reap(&mut v, Duration::from_secs(10));
        assert!(v.is_empty());
        t.join().unwrap();
    }
}
