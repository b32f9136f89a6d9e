//! Rootless container executor for landscapes.
//!
//! An *instance* runs one command in its own user, mount, pid, uts, ipc and network
//! namespaces. Its root filesystem is a read-only base (the host's `/usr` & `/etc`, or
//! an unpacked image) under a throwaway tmpfs layer, except the landscape's app
//! directory, bind-mounted read-write at `/home/user/app`, which persists. Container ids
//! always map to unprivileged host ids: the runtime's own when it runs unprivileged, a
//! subordinate range (`/etc/subuid`) when it runs as root.
//!
//! The clone path never runs in the (multi-threaded) host: [`init`] forks a small
//! single-threaded fork server before any thread exists, and [`Runtime::spawn`] has it
//! fork each instance's helper (re-executing the host binary as the helper when there is
//! no server). **A host adds one line, first in `main`: `landscape_runtime::init();`**
//!
//! ```
//! use landscape_runtime::{InstanceSpec, Output, Process, Runtime};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     landscape_runtime::init(); // the helper hook: must come first
//!     let runtime = Runtime::with_defaults()?;
//!     let app = std::env::temp_dir().join(format!("my-app-{}", std::process::id()));
//!     std::fs::create_dir_all(&app)?;
//!     let mut spec = InstanceSpec::new("web", Process::shell("echo hi > /home/user/app/out"));
//!     spec.app_dir = Some(app.clone());
//!     let exit = runtime.spawn(&spec, Output::Inherit)?.wait()?;
//!     assert!(exit.success());
//!     assert_eq!(std::fs::read_to_string(app.join("out"))?, "hi\n");
//!     std::fs::remove_dir_all(&app)?;
//!     Ok(())
//! }
//! ```
#![warn(missing_docs)]

pub mod cgroup;
mod container;
mod dns;
mod error;
mod forkserver;
mod helper;
mod idmap;
pub mod image;
mod instance;
pub mod logs;
pub mod managed;
mod netlink;
pub mod network;
mod plan;
mod registry;
pub mod seccomp;
mod service;
mod settle;
mod spec;
pub mod supervisor;
mod sys;

pub use cgroup::Usage;
pub use error::{Error, Result};
pub use helper::HELPER_ENV;
pub use idmap::IdMap;
pub use instance::{
    Exit, HelperBinary, Instance, InstanceControl, InstanceRecord, Output, Parked, Runtime,
    RuntimeConfig,
};
pub use logs::{LogConfig, LogLine, Stream};
pub use managed::{Connection, ManagedContext, Provider, Providers, ResourceId, Secret};
pub use network::{Attachment, Network, NetworkConfig, NetworkRecord};
pub use plan::{MIN_PIDS, PIDS_PER_GIB};
pub use spec::{
    BindMount, InstanceSpec, Limits, PortPolicy, Process, Rlimits, Rootfs, User, APP_MOUNT_PATH,
    DEFAULT_PATH,
};
pub use supervisor::{
    Applied, Backoff, Event, EventKind, Power, Probe, ProbeConfig, ReplicaState, ReplicaStatus,
    ReplicaUsage, ServiceDef, StageFailure, Status, StepDef, Supervisor, SupervisorConfig,
};

/// The helper entry hook. Call it first in `main`, before any thread starts: in a process
/// started by [`Runtime::spawn`] it runs the instance's helper and exits; otherwise it
/// starts the fork server (see [`InitOptions::fork_server`]) and returns.
pub fn init() {
    init_with(InitOptions::default());
}

/// What [`init_with`] sets up.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    /// Fork a small single-threaded fork server now (the process must still be
    /// single-threaded; otherwise none is started). [`Runtime::spawn`] then forks each
    /// instance's helper from it instead of re-executing the host binary, which makes
    /// starting an instance several milliseconds cheaper. Default `true`; a program that
    /// never calls `spawn` (only [`Runtime::run_foreground`], like `landscape exec`) can
    /// save the fork.
    pub fork_server: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { fork_server: true }
    }
}

/// [`init`] with options. Call it first in `main`, before any thread starts.
pub fn init_with(options: InitOptions) {
    helper::maybe_run();
    if options.fork_server {
        forkserver::start();
    }
}

/// Waits until the helper of every ended instance has finished its tear-down and exited,
/// at most `timeout`; true when none is left. [`Instance::wait`] returns as soon as the
/// exit is known, and the helper then releases the instance's mount namespace, cgroups
/// and veth pair; call this where "nothing is left" must hold (after stopping a
/// landscape, before reusing its resources).
pub fn settle(timeout: std::time::Duration) -> bool {
    settle::settle(timeout)
}

/// For a host that is about to exit: [`settle`], then stops the fork server and reaps it,
/// so that no process of the runtime outlives the host (otherwise the fork server dies
/// with the host, a moment later, and helpers still tearing down would be left to PID 1).
/// Instances started afterwards re-execute the host binary. True when all are gone
/// within `timeout`.
pub fn shutdown(timeout: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    let settled = settle::settle(timeout);
    let stopped = forkserver::stop(timeout.saturating_sub(start.elapsed()));
    settled && stopped
}

/// Pid of this process's fork server while it runs (`None`: none was started, or it
/// died and instances are started by re-executing the host binary).
pub fn fork_server_pid() -> Option<i32> {
    forkserver::pid()
}
