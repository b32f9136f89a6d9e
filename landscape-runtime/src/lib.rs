//! Rootless container executor for landscapes.
//!
//! An *instance* runs one command in its own user, mount, pid, uts, ipc and network
//! namespaces. Its root filesystem is a read-only base (the host's `/usr` & `/etc`, or
//! an unpacked image) under a throwaway tmpfs layer, except the landscape's app
//! directory, bind-mounted read-write at `/home/user/app`, which persists. Container ids
//! always map to unprivileged host ids: the runtime's own when it runs unprivileged, a
//! subordinate range (`/etc/subuid`) when it runs as root.
//!
//! The clone path never runs in the (multi-threaded) host: [`Runtime::spawn`] re-executes
//! the host binary as a single-threaded helper. **A host adds one line, first in `main`:
//! `landscape_runtime::init();`**
//!
//! ```
//! use landscape_runtime::{InstanceSpec, Output, Process, Runtime};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     landscape_runtime::init(); // the helper hook: must come first
//!     let runtime = Runtime::with_defaults()?;
//!     let app = std::env::temp_dir().join(format!("my-app-{}", std::process::id()));
//!     std::fs::create_dir_all(&app)?;
//!     runtime.adopt_dir(&app, Default::default())?;
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
mod error;
mod helper;
mod idmap;
pub mod image;
mod instance;
pub mod logs;
mod plan;
pub mod seccomp;
mod service;
mod spec;
mod sys;

pub use cgroup::Usage;
pub use error::{Error, Result};
pub use helper::HELPER_ENV;
pub use idmap::IdMap;
pub use instance::{Exit, HelperBinary, Instance, Output, Runtime, RuntimeConfig};
pub use logs::{LogConfig, LogLine, Stream};
pub use plan::{MIN_PIDS, PIDS_PER_GIB};
pub use spec::{
    BindMount, InstanceSpec, Limits, PortPolicy, Process, Rlimits, Rootfs, User, APP_MOUNT_PATH,
    DEFAULT_PATH,
};

/// The helper entry hook. Call it first in `main`, before any thread starts: in a process
/// started by [`Runtime::spawn`] it runs the instance's helper and exits; otherwise it
/// returns immediately.
pub fn init() {
    helper::maybe_run();
}
