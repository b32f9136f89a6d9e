//! What an instance is: the plain configuration a host hands to [`crate::Runtime::spawn`].

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the app directory appears inside every instance.
pub const APP_MOUNT_PATH: &str = "/home/user/app";

/// PATH used when the command's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The read-only base of an instance's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Rootfs {
    /// The host's own `/usr`, `/etc` (and `/bin`, `/lib*`, `/sbin`), read-only: the shared
    /// base of Reactives, nothing to download.
    #[default]
    Host,
    /// An unpacked root filesystem directory (e.g. an OCI image unpacked by
    /// [`crate::image`]), used read-only as the lower layer.
    Dir(PathBuf),
}

/// A bind mount of a host path into the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path (a directory or a single file).
    pub source: PathBuf,
    /// Absolute path inside the instance.
    pub target: String,
    /// Mount it read-only.
    pub read_only: bool,
}

/// The process an instance runs. Its `Debug` output names the environment variables but
/// never prints their values (they hold resolved secrets).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Process {
    /// argv; `args[0]` is looked up in the instance's `PATH` when it has no `/`.
    pub args: Vec<String>,
    /// Environment (`KEY`, `VALUE`); `PATH` and `HOME` get defaults when absent.
    pub env: Vec<(String, String)>,
    /// Working directory inside the instance; default [`APP_MOUNT_PATH`].
    pub cwd: Option<String>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Env<'a>(&'a [(String, String)]);
        impl std::fmt::Debug for Env<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, _)| (k, format_args!("[redacted]"))))
                    .finish()
            }
        }
        f.debug_struct("Process")
            .field("args", &self.args)
            .field("env", &Env(&self.env))
            .field("cwd", &self.cwd)
            .finish()
    }
}

impl Process {
    /// A shell step: `/bin/sh -c SCRIPT` (how ci.yml steps run).
    pub fn shell(script: impl Into<String>) -> Self {
        Process {
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            ..Default::default()
        }
    }
    /// A command list run directly (a container's `command`, an image's entrypoint+cmd).
    pub fn argv<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Process {
            args: args.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }
    /// Adds one environment variable (builder style).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Container user and group (`runAsUser` / `runAsGroup`); default 0:0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct User {
    /// uid inside the instance.
    pub uid: u32,
    /// gid inside the instance.
    pub gid: u32,
}

/// Resource limits of an instance (from a plan); `None` fields are unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Limits {
    /// Memory limit in bytes (memory + page cache; swap is not granted).
    pub memory_bytes: Option<u64>,
    /// CPU limit in cores (e.g. 0.5 = half a core), enforced as a CFS quota.
    pub cpu_cores: Option<f64>,
    /// Maximum number of processes/threads.
    pub pids: Option<u64>,
}

/// Who may bind ports below 1024 inside the instance's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PortPolicy {
    /// Reactive default: ports 1024-65535 only (`CAP_NET_BIND_SERVICE` is dropped).
    #[default]
    UnprivilegedOnly,
    /// Managed Containers: any port, inside the instance's own network namespace.
    AllowPrivileged,
}

/// Resource limits applied with setrlimit to the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    /// RLIMIT_NOFILE (clamped to the host's hard limit).
    pub nofile: u64,
    /// RLIMIT_CORE (0: no core dumps).
    pub core: u64,
}

impl Default for Rlimits {
    fn default() -> Self {
        Rlimits {
            nofile: 65536,
            core: 0,
        }
    }
}

/// Everything needed to start one instance (one replica of one service).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct InstanceSpec {
    /// Service name; used for the hostname default and the instance id.
    pub name: String,
    /// Hostname inside the instance; default `name`.
    pub hostname: Option<String>,
    /// Base of the root filesystem.
    pub rootfs: Rootfs,
    /// The landscape's app directory, bind-mounted read-write at [`APP_MOUNT_PATH`]
    /// (already narrowed to its `workspacePath`/`mountSubPath` part by the caller, see
    /// [`InstanceSpec::volume`]).
    pub app_dir: Option<PathBuf>,
    /// Further bind mounts (`volumeMounts`), read-write unless marked.
    pub mounts: Vec<BindMount>,
    /// The command.
    pub process: Process,
    /// Container user/group.
    pub user: User,
    /// Port policy (Reactive default: no ports below 1024).
    pub ports: PortPolicy,
    /// cgroup limits (applied where cgroups are writable).
    pub limits: Option<Limits>,
    /// Process rlimits.
    pub rlimits: Rlimits,
    /// Disable the default seccomp filters (default: applied; see [`crate::seccomp`]).
    pub no_seccomp: bool,
    /// Make the whole root filesystem read-only (no throwaway layer writes outside
    /// `/tmp`, `/dev/shm`, the app directory and the volume mounts), like Kubernetes'
    /// `readOnlyRootFilesystem`.
    pub read_only_root: bool,
    /// The landscape network the instance joins (its own address, `eth0`, the landscape's
    /// DNS); `None`: loopback only. See [`crate::Network::attachment`].
    pub network: Option<crate::network::Attachment>,
    /// The instance outlives its host process: when the host's connection to its helper
    /// closes (the host was killed), the instance goes on running and its helper waits on
    /// a socket in the runtime's state directory for a new host
    /// ([`crate::Runtime::adopt`] with [`crate::Instance::record`]). Its output goes
    /// through named pipes that buffer while no host reads them.
    #[serde(default)]
    pub durable: bool,
}

impl InstanceSpec {
    /// A spec for `name` running `process` on the host base.
    pub fn new(name: impl Into<String>, process: Process) -> Self {
        InstanceSpec {
            name: name.into(),
            process,
            ..Default::default()
        }
    }

    /// Adds a `volumeMounts` entry: `workspace_path` (relative to the app directory, may
    /// name a single file) mounted read-write at `mount_path`.
    pub fn volume(
        &mut self,
        app_dir: &std::path::Path,
        workspace_path: &str,
        mount_path: &str,
    ) -> crate::Result<&mut Self> {
        let rel = workspace_path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return Err(crate::Error::InvalidSpec(format!(
                "volume mount {workspace_path:?}: workspace paths must stay inside the app directory (no \"..\")"
            )));
        }
        let source = if rel.is_empty() {
            app_dir.to_path_buf()
        } else {
            app_dir.join(rel)
        };
        if !source.exists() {
            return Err(crate::Error::InvalidSpec(format!(
                "volume mount {workspace_path:?}: {} does not exist; create it in the app directory first",
                source.display()
            )));
        }
        self.mounts.push(BindMount {
            source,
            target: mount_path.to_string(),
            read_only: false,
        });
        Ok(self)
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        use crate::Error::InvalidSpec;
        if self.process.args.is_empty() {
            return Err(InvalidSpec(format!(
                "instance {:?}: the command is empty; give a command or a step",
                self.name
            )));
        }
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(InvalidSpec(format!(
                "instance name {:?}: use letters, digits, '-', '_' or '.'",
                self.name
            )));
        }
        if let Some(h) = &self.hostname {
            if h.is_empty() || h.len() > 64 {
                return Err(InvalidSpec(format!(
                    "hostname {h:?}: must be 1-64 characters"
                )));
            }
        }
        if let Some(app) = &self.app_dir {
            if !app.is_dir() {
                return Err(InvalidSpec(format!(
                    "app directory {}: not a directory; create it first",
                    app.display()
                )));
            }
        }
        for m in &self.mounts {
            if !m.target.starts_with('/') || m.target.split('/').any(|c| c == "..") {
                return Err(InvalidSpec(format!(
                    "mount path {:?}: must be absolute and contain no \"..\"",
                    m.target
                )));
            }
            if matches!(m.target.as_str(), "/" | "/proc" | "/dev" | "/sys") {
                return Err(InvalidSpec(format!(
                    "mount path {:?}: reserved by the runtime; choose another path",
                    m.target
                )));
            }
            if !m.source.exists() {
                return Err(InvalidSpec(format!(
                    "mount source {}: does not exist",
                    m.source.display()
                )));
            }
        }
        if let Rootfs::Dir(d) = &self.rootfs {
            if !d.is_dir() {
                return Err(InvalidSpec(format!(
                    "root filesystem {}: not a directory",
                    d.display()
                )));
            }
        }
        if let Some(l) = &self.limits {
            if l.cpu_cores.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
                return Err(InvalidSpec(
                    "cpu limit must be a positive number of cores".into(),
                ));
            }
        }
        Ok(())
    }
}
