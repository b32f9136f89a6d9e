//! cgroup limits, usage, OOM detection and freezing for one instance, on cgroup v1 and on
//! cgroup v2 (the unified hierarchy).
//!
//! - **cgroup v1** (and hybrid machines, whose controllers are v1 hierarchies): each instance
//!   gets `<root>/<controller>/landscape/<instance-id>` in the memory, cpu, cpuacct, pids and
//!   freezer hierarchies.
//! - **cgroup v2** (`<root>` is a cgroup2 mount): each instance gets one directory,
//!   `<base>/landscape/<instance-id>`, with `memory.max`, `cpu.max`, `pids.max`, the freezer
//!   (`cgroup.freeze`), `memory.events` for OOM kills, and `memory.current` / `cpu.stat` for
//!   usage. As root, `<base>` is the hierarchy's root (as with v1). Unprivileged, `<base>` is
//!   the runtime's own cgroup (from `/proc/self/cgroup`), which must be a delegated subtree —
//!   what systemd gives a user's session, a `systemd-run --user --scope -p Delegate=yes`
//!   scope, or a unit with `Delegate=yes`, as rootless podman uses it.
//!
//! cgroup v2 lets a cgroup hand controllers to its children only while it holds no processes
//! itself (the "no internal processes" rule). The first time limits are needed
//! ([`Hierarchy::prepare`]), the processes of `<base>` are therefore moved into a leaf child,
//! `<base>/host`, and the memory, cpu and pids controllers are enabled for `<base>`'s and
//! `landscape`'s children — what podman and crun do in a delegated subtree, and what the
//! Docker-in-Docker entrypoint does.
//!
//! Only usable where the runtime may write there (root, or a delegated tree); elsewhere
//! instances run without limits and [`crate::Instance::limits_enforced`] says so.
//!
//! This module writes the cgroup files itself instead of using the `cgroups-rs` crate; the
//! runtime's README says why, with the measurement.

use crate::{Error, Limits, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];
/// The controllers an instance's cgroup v2 directory needs.
const V2_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
const CFS_PERIOD_US: u64 = 100_000;
/// The leaf that holds the runtime's own processes in a delegated cgroup v2 subtree.
const V2_HOST_LEAF: &str = "host";
/// How long freezing, thawing and removing may take.
const SETTLE: Duration = Duration::from_secs(5);

/// Resource usage of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    /// CPU time consumed, in nanoseconds.
    pub cpu_time_ns: u64,
    /// Current memory use in bytes.
    pub memory_current: u64,
    /// Peak memory use in bytes (cgroup v2 kernels before 5.19 have no `memory.peak`: the
    /// current use then).
    pub memory_peak: u64,
    /// Number of processes/threads now.
    pub pids_current: u64,
}

/// Which cgroup hierarchy the runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// One hierarchy per controller (also the controllers of a hybrid machine).
    #[default]
    V1,
    /// The unified hierarchy.
    V2,
}

/// Where this runtime creates instance cgroups: found by [`Hierarchy::detect`], once per
/// runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    version: Version,
    /// v1: the directory holding the controller hierarchies; v2: the cgroup that holds
    /// `landscape/`.
    base: PathBuf,
}

/// The cgroups of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroups {
    /// v1: the directory holding the controller hierarchies; v2: the cgroup that holds
    /// `landscape/`.
    root: PathBuf,
    id: String,
    /// Records written before cgroup v2 support hold v1 cgroups.
    #[serde(default)]
    version: Version,
}

/// Whether this process can create cgroups under `root` (cgroup v1 with the needed
/// controllers, or cgroup v2 with them delegated to it, writable). Returns the reason when
/// not. Checks only; see [`Hierarchy::detect`].
pub fn availability(root: &Path) -> std::result::Result<(), String> {
    Hierarchy::detect(root).map(|_| ())
}

/// The cgroup path of this process in the unified hierarchy: the `0::PATH` line of
/// `/proc/self/cgroup` (`text`), without its leading `/`.
pub(crate) fn own_cgroup_v2(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|l| {
        let path = l.strip_prefix("0::")?;
        // A process whose cgroup was removed shows `PATH (deleted)`.
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        Some(PathBuf::from(path.trim_start_matches('/')))
    })
}

/// The cgroup that holds `landscape/` for an unprivileged runtime whose own cgroup is
/// `own` (relative to the cgroup2 mount `root`).
fn v2_base(root: &Path, own: &Path) -> PathBuf {
    // Inside a container without its own cgroup namespace the path may not exist under the
    // mount, which then shows this process's cgroup at its root.
    let own = Some(root.join(own))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| root.to_path_buf());
    // Readied before (by another runtime of this process, or an earlier host): this process
    // sits in the base's `host` leaf.
    match own.parent() {
        Some(parent)
            if own.file_name() == Some(std::ffi::OsStr::new(V2_HOST_LEAF))
                && parent.join("landscape").is_dir() =>
        {
            parent.to_path_buf()
        }
        _ => own,
    }
}

fn writable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
}

impl Hierarchy {
    /// Finds the hierarchy at `root` (normally `/sys/fs/cgroup`): cgroup v2 where `root` is
    /// a cgroup2 mount (it has `cgroup.controllers`), else cgroup v1. Returns why limits
    /// cannot be enforced when they cannot. Changes nothing.
    pub fn detect(root: &Path) -> std::result::Result<Hierarchy, String> {
        if root.join("cgroup.controllers").is_file() {
            return Self::detect_v2(root);
        }
        for c in CONTROLLERS {
            let dir = root.join(c);
            if !dir.join("cgroup.procs").exists() {
                return Err(format!(
                    "no cgroup v1 {c} controller at {} (and {} is not a cgroup2 mount)",
                    dir.display(),
                    root.display()
                ));
            }
            if !writable(&dir) {
                return Err(format!(
                    "{} is not writable by this user (cgroups are not delegated)",
                    dir.display()
                ));
            }
        }
        Ok(Hierarchy {
            version: Version::V1,
            base: root.to_path_buf(),
        })
    }

    fn detect_v2(root: &Path) -> std::result::Result<Hierarchy, String> {
        let base = if nix::unistd::geteuid().is_root() {
            root.to_path_buf()
        } else {
            let text = std::fs::read_to_string("/proc/self/cgroup")
                .map_err(|e| format!("cgroup v2: cannot read /proc/self/cgroup: {e}"))?;
            let own = own_cgroup_v2(&text).ok_or_else(|| {
                "cgroup v2: /proc/self/cgroup has no unified (`0::`) entry".to_string()
            })?;
            v2_base(root, &own)
        };
        let available = std::fs::read_to_string(base.join("cgroup.controllers")).map_err(|e| {
            format!(
                "cgroup v2: {}: {e}",
                base.join("cgroup.controllers").display()
            )
        })?;
        let missing: Vec<&str> = V2_CONTROLLERS
            .into_iter()
            .filter(|c| !available.split_whitespace().any(|a| a == *c))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "cgroup v2: the {} controller{} not delegated to {} (it has: {}); run under a unit with Delegate=yes (e.g. `systemd-run --user --scope -p Delegate=yes ...`)",
                missing.join(", "),
                if missing.len() == 1 { " is" } else { "s are" },
                base.display(),
                available.trim()
            ));
        }
        for f in ["cgroup.procs", "cgroup.subtree_control"] {
            if !writable(&base.join(f)) {
                return Err(format!(
                    "cgroup v2: {} is not writable by this user (its cgroup is not delegated: run under a unit with Delegate=yes, e.g. `systemd-run --user --scope -p Delegate=yes ...`)",
                    base.join(f).display()
                ));
            }
        }
        Ok(Hierarchy {
            version: Version::V2,
            base,
        })
    }

    /// A cgroup v2 hierarchy whose instance cgroups go under `base/landscape`, taken as
    /// given: no checks and nothing readied (for hosts that arrange the delegation
    /// themselves, and for tests). Limits left unset need no controller.
    pub fn v2_at(base: &Path) -> Hierarchy {
        Hierarchy {
            version: Version::V2,
            base: base.to_path_buf(),
        }
    }

    /// The hierarchy's version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// v1: the directory holding the controller hierarchies; v2: the cgroup that holds
    /// `landscape/`.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Readies the hierarchy for instance cgroups; idempotent. cgroup v1: nothing to do.
    /// cgroup v2: enables the memory, cpu and pids controllers for the children of the base
    /// and of `landscape/` under it, moving the base's own processes (this runtime's among
    /// them) into the leaf `host` first where the base holds processes.
    pub fn prepare(&self) -> std::result::Result<(), String> {
        if self.version == Version::V1 {
            return Ok(());
        }
        let enable = |dir: &Path| -> std::io::Result<()> {
            let on = std::fs::read_to_string(dir.join("cgroup.subtree_control"))?;
            let wanted: Vec<String> = V2_CONTROLLERS
                .into_iter()
                .filter(|c| !on.split_whitespace().any(|o| o == *c))
                .map(|c| format!("+{c}"))
                .collect();
            if wanted.is_empty() {
                return Ok(());
            }
            std::fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))
        };
        let what = |dir: &Path, e: std::io::Error| {
            format!(
                "cgroup v2: cannot enable {} for the children of {}: {e}",
                V2_CONTROLLERS.join(", "),
                dir.display()
            )
        };
        match enable(&self.base) {
            Ok(()) => {}
            // The base holds processes: move them into a leaf, then enable.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                self.move_processes_to_leaf()?;
                enable(&self.base).map_err(|e| what(&self.base, e))?;
            }
            Err(e) => return Err(what(&self.base, e)),
        }
        let dir = self.base.join("landscape");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cgroup v2: cannot create {}: {e}", dir.display()))?;
        enable(&dir).map_err(|e| what(&dir, e))
    }

    /// Moves every process of the base cgroup into `<base>/host`, until none is left (a
    /// process forked meanwhile is caught by the next round).
    fn move_processes_to_leaf(&self) -> std::result::Result<(), String> {
        let leaf = self.base.join(V2_HOST_LEAF);
        std::fs::create_dir_all(&leaf)
            .map_err(|e| format!("cgroup v2: cannot create {}: {e}", leaf.display()))?;
        let procs = self.base.join("cgroup.procs");
        for _ in 0..100 {
            let list = std::fs::read_to_string(&procs)
                .map_err(|e| format!("cgroup v2: {}: {e}", procs.display()))?;
            let pids: Vec<&str> = list.split_whitespace().collect();
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                match std::fs::write(leaf.join("cgroup.procs"), pid) {
                    Ok(()) => {}
                    // Gone meanwhile.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => {
                        return Err(format!(
                            "cgroup v2: cannot move process {pid} from {} into {}: {e}",
                            self.base.display(),
                            leaf.display()
                        ))
                    }
                }
            }
        }
        Err(format!(
            "cgroup v2: processes keep appearing in {}; cannot empty it",
            self.base.display()
        ))
    }

    /// The cgroups of instance `id` here; nothing is created yet.
    pub fn cgroups(&self, id: &str) -> Cgroups {
        Cgroups {
            root: self.base.clone(),
            id: id.to_string(),
            version: self.version,
        }
    }
}

/// The `cpu.max` line for `cores` CPUs (`"QUOTA PERIOD"`, or `"max PERIOD"`), with the same
/// 1 ms floor as cgroup v1's quota.
pub(crate) fn cpu_max(cores: Option<f64>) -> String {
    match cores {
        Some(c) => format!("{} {CFS_PERIOD_US}", cpu_quota_us(c)),
        None => format!("max {CFS_PERIOD_US}"),
    }
}

fn cpu_quota_us(cores: f64) -> u64 {
    ((cores * CFS_PERIOD_US as f64) as u64).max(1000)
}

/// The value of `key` in a flat-keyed cgroup v2 file (`cpu.stat`, `memory.events`,
/// `cgroup.events`: one `KEY VALUE` per line).
pub(crate) fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn io_err(path: PathBuf, what: &str, e: std::io::Error) -> Error {
    Error::Cgroup {
        path,
        message: format!("{what}: {e}"),
    }
}

impl Cgroups {
    /// The cgroups of instance `id` under the cgroup v1 hierarchies at `root` (normally
    /// `/sys/fs/cgroup`); nothing is created yet. See [`Hierarchy::cgroups`] for either
    /// version.
    pub fn new(root: &Path, id: &str) -> Self {
        Cgroups {
            root: root.to_path_buf(),
            id: id.to_string(),
            version: Version::V1,
        }
    }

    /// The hierarchy version these cgroups live in.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Directory of controller `c` (cgroup v2: the instance's one directory, whatever `c`).
    pub fn path(&self, c: &str) -> PathBuf {
        match self.version {
            Version::V1 => self.root.join(c).join("landscape").join(&self.id),
            Version::V2 => self.root.join("landscape").join(&self.id),
        }
    }

    /// The directories to create and remove.
    fn dirs(&self) -> Vec<PathBuf> {
        match self.version {
            Version::V1 => CONTROLLERS.iter().map(|c| self.path(c)).collect(),
            Version::V2 => vec![self.path("")],
        }
    }

    /// Creates the directories and applies `limits`.
    pub fn create(&self, limits: &Limits) -> Result<()> {
        for p in self.dirs() {
            std::fs::create_dir_all(&p).map_err(|e| Error::Cgroup {
                path: p.clone(),
                message: format!("cannot create: {e}"),
            })?;
        }
        self.set_limits(limits)
    }

    fn write(&self, c: &str, file: &str, value: &str) -> Result<()> {
        let p = self.path(c).join(file);
        std::fs::write(&p, value).map_err(|e| Error::Cgroup {
            path: p,
            message: format!("cannot write {value:?}: {e}"),
        })
    }

    fn read(&self, c: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.path(c).join(file)).ok()
    }

    fn read_u64(&self, c: &str, file: &str) -> u64 {
        self.read(c, file)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Applies `limits` (also on a running instance: vertical scaling without restart).
    pub fn set_limits(&self, limits: &Limits) -> Result<()> {
        match self.version {
            Version::V1 => self.set_limits_v1(limits),
            Version::V2 => self.set_limits_v2(limits),
        }
    }

    fn set_limits_v1(&self, limits: &Limits) -> Result<()> {
        let mem = limits
            .memory_bytes
            .map_or_else(|| "-1".to_string(), |b| b.to_string());
        let memsw = self
            .path("memory")
            .join("memory.memsw.limit_in_bytes")
            .exists();
        // memsw must stay >= the memory limit: raise it first, lower it last.
        if memsw {
            let _ = self.write("memory", "memory.memsw.limit_in_bytes", &mem);
        }
        self.write("memory", "memory.limit_in_bytes", &mem)?;
        if memsw {
            self.write("memory", "memory.memsw.limit_in_bytes", &mem)?;
        } else {
            let _ = self.write("memory", "memory.swappiness", "0");
        }
        self.write("cpu", "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
        let quota = limits
            .cpu_cores
            .map_or_else(|| "-1".to_string(), |c| cpu_quota_us(c).to_string());
        self.write("cpu", "cpu.cfs_quota_us", &quota)?;
        let pids = limits
            .pids
            .map_or_else(|| "max".to_string(), |p| p.to_string());
        self.write("pids", "pids.max", &pids)?;
        Ok(())
    }

    fn set_limits_v2(&self, limits: &Limits) -> Result<()> {
        // No limit needs no controller: a cgroup whose parent does not hand it that
        // controller has no such file, and is as unlimited as asked.
        let set = |file: &str, value: Option<String>| -> Result<()> {
            match value {
                Some(v) => self.write("", file, &v),
                None if self.path("").join(file).exists() => self.write("", file, "max"),
                None => Ok(()),
            }
        };
        set("memory.max", limits.memory_bytes.map(|b| b.to_string()))?;
        // As with v1's memsw: the limit holds for memory and swap together, so a limited
        // instance gets no swap. Kernels without swap accounting have no such file.
        if self.path("").join("memory.swap.max").exists() {
            set(
                "memory.swap.max",
                limits.memory_bytes.map(|_| "0".to_string()),
            )?;
        }
        match limits.cpu_cores {
            Some(c) => self.write("", "cpu.max", &cpu_max(Some(c)))?,
            None if self.path("").join("cpu.max").exists() => {
                self.write("", "cpu.max", &cpu_max(None))?
            }
            None => {}
        }
        set("pids.max", limits.pids.map(|p| p.to_string()))
    }

    /// Moves process `pid` into every controller.
    pub fn add(&self, pid: i32) -> Result<()> {
        match self.version {
            Version::V1 => {
                for c in CONTROLLERS {
                    self.write(c, "cgroup.procs", &pid.to_string())?;
                }
                Ok(())
            }
            Version::V2 => self.write("", "cgroup.procs", &pid.to_string()),
        }
    }

    /// Current usage.
    pub fn usage(&self) -> Usage {
        match self.version {
            Version::V1 => Usage {
                cpu_time_ns: self.read_u64("cpuacct", "cpuacct.usage"),
                memory_current: self.read_u64("memory", "memory.usage_in_bytes"),
                memory_peak: self.read_u64("memory", "memory.max_usage_in_bytes"),
                pids_current: self.read_u64("pids", "pids.current"),
            },
            Version::V2 => {
                let memory_current = self.read_u64("", "memory.current");
                Usage {
                    cpu_time_ns: self
                        .read("", "cpu.stat")
                        .and_then(|s| flat_keyed(&s, "usage_usec"))
                        .unwrap_or(0)
                        .saturating_mul(1000),
                    memory_current,
                    memory_peak: self.read_u64("", "memory.peak").max(memory_current),
                    pids_current: self.read_u64("", "pids.current"),
                }
            }
        }
    }

    /// Whether the kernel OOM-killed a process of the instance.
    pub fn oom_killed(&self) -> bool {
        let count = match self.version {
            Version::V1 => self.read("memory", "memory.oom_control").and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            }),
            Version::V2 => self
                .read("", "memory.events")
                .and_then(|s| flat_keyed(&s, "oom_kill")),
        };
        count.is_some_and(|n| n > 0)
    }

    /// Freezes (`true`) or thaws (`false`) every process of the instance and waits until
    /// the freezer reports the new state.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        self.freeze_within(frozen, SETTLE)
    }

    fn freeze_within(&self, frozen: bool, settle: Duration) -> Result<()> {
        // v1: freezer.state is both the control and the state; v2: cgroup.freeze, and the
        // state in cgroup.events.
        let (control, value, state_file) = match self.version {
            Version::V1 => (
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
                "freezer.state",
            ),
            Version::V2 => (
                "cgroup.freeze",
                if frozen { "1" } else { "0" },
                "cgroup.events",
            ),
        };
        let done = |now: &str| match self.version {
            Version::V1 => now.trim() == value,
            Version::V2 => flat_keyed(now, "frozen") == Some(u64::from(frozen)),
        };
        self.write("freezer", control, value)?;
        let p = self.path("freezer").join(state_file);
        let deadline = Instant::now() + settle;
        let mut pause = Duration::from_micros(50);
        loop {
            let now = std::fs::read_to_string(&p).unwrap_or_default();
            if done(&now) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Cgroup {
                    path: p,
                    message: format!(
                        "not {} after {} ms: {:?}",
                        if frozen { "frozen" } else { "thawed" },
                        settle.as_millis(),
                        now.trim()
                    ),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Thaws the instance without waiting (before killing it: a process frozen by the
    /// cgroup v1 freezer does not act even on SIGKILL).
    pub fn thaw_now(&self) {
        let _ = match self.version {
            Version::V1 => self.write("freezer", "freezer.state", "THAWED"),
            Version::V2 => self.write("", "cgroup.freeze", "0"),
        };
    }

    /// Removes the directories (the instance's processes must be gone); retries briefly
    /// while the kernel finishes tearing the processes down.
    pub fn remove(&self) -> Result<()> {
        let deadline = Instant::now() + SETTLE;
        for p in self.dirs() {
            loop {
                match std::fs::remove_dir(&p) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() > deadline => {
                        return Err(io_err(p, "cannot remove", e));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory laid out as a cgroup v2 directory (plain files: the kernel's formats,
    /// written here).
    struct FakeV2(PathBuf);

    impl FakeV2 {
        fn new(name: &str) -> FakeV2 {
            let dir = std::env::temp_dir()
                .join(format!("landscape-cgroup-v2-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            FakeV2(dir)
        }
        fn cgroups(&self) -> Cgroups {
            Hierarchy {
                version: Version::V2,
                base: self.0.clone(),
            }
            .cgroups("web-1")
        }
    }

    impl Drop for FakeV2 {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn own_cgroup_comes_from_the_unified_line() {
        let hybrid = "12:pids:/user.slice\n1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n0::/user.slice/user-1000.slice/session-2.scope\n";
        assert_eq!(
            own_cgroup_v2(hybrid),
            Some(PathBuf::from("user.slice/user-1000.slice/session-2.scope"))
        );
        assert_eq!(
            own_cgroup_v2(
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/podman.scope\n"
            ),
            Some(PathBuf::from(
                "user.slice/user-1000.slice/user@1000.service/app.slice/podman.scope"
            ))
        );
        assert_eq!(own_cgroup_v2("0::/\n"), Some(PathBuf::new()));
        assert_eq!(
            own_cgroup_v2("0::/system.slice/x.service (deleted)\n"),
            Some(PathBuf::from("system.slice/x.service"))
        );
        assert_eq!(own_cgroup_v2("4:memory:/a\n1:cpu:/\n"), None);
    }

    #[test]
    fn v2_flat_keyed_files_parse() {
        let cpu_stat = "usage_usec 8227\nuser_usec 4113\nsystem_usec 4114\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n";
        assert_eq!(flat_keyed(cpu_stat, "usage_usec"), Some(8227));
        assert_eq!(flat_keyed(cpu_stat, "throttled_usec"), Some(0));
        assert_eq!(flat_keyed(cpu_stat, "usage"), None);
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(flat_keyed(events, "oom_kill"), Some(1));
        assert_eq!(flat_keyed(events, "oom"), Some(1));
        assert_eq!(flat_keyed("populated 1\nfrozen 0\n", "frozen"), Some(0));
        assert_eq!(flat_keyed("oom_kill x\n", "oom_kill"), None);
        assert_eq!(flat_keyed("", "oom_kill"), None);
    }

    #[test]
    fn v2_cpu_max_is_quota_and_period() {
        assert_eq!(cpu_max(Some(0.5)), "50000 100000");
        assert_eq!(cpu_max(Some(2.0)), "200000 100000");
        // The same 1 ms floor as v1's cfs_quota_us.
        assert_eq!(cpu_max(Some(0.001)), "1000 100000");
        assert_eq!(cpu_max(None), "max 100000");
    }

    #[test]
    fn v2_limits_usage_and_oom_use_the_unified_files() {
        let fake = FakeV2::new("files");
        let cg = fake.cgroups();
        assert_eq!(cg.version(), Version::V2);
        let dir = cg.path("memory");
        assert_eq!(dir, cg.path("pids"));
        assert_eq!(dir, fake.0.join("landscape/web-1"));
        cg.create(&Limits {
            memory_bytes: Some(64 << 20),
            cpu_cores: Some(0.5),
            pids: Some(100),
        })
        .unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "100");
        // No swap accounting here (no memory.swap.max): not created.
        assert!(!dir.join("memory.swap.max").exists());
        std::fs::write(dir.join("memory.swap.max"), "max").unwrap();
        cg.set_limits(&Limits::default()).unwrap();
        assert_eq!(read("memory.max"), "max");
        assert_eq!(read("memory.swap.max"), "max");
        assert_eq!(read("cpu.max"), "max 100000");
        assert_eq!(read("pids.max"), "max");
        cg.set_limits(&Limits {
            memory_bytes: Some(1 << 30),
            ..Limits::default()
        })
        .unwrap();
        assert_eq!(read("memory.swap.max"), "0");

        std::fs::write(dir.join("memory.current"), "4096000\n").unwrap();
        std::fs::write(dir.join("pids.current"), "3\n").unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap();
        // No memory.peak (kernels before 5.19): the current use.
        assert_eq!(
            cg.usage(),
            Usage {
                cpu_time_ns: 1_500_000,
                memory_current: 4_096_000,
                memory_peak: 4_096_000,
                pids_current: 3
            }
        );
        std::fs::write(dir.join("memory.peak"), "9000000\n").unwrap();
        assert_eq!(cg.usage().memory_peak, 9_000_000);

        assert!(!cg.oom_killed());
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n",
        )
        .unwrap();
        assert!(!cg.oom_killed());
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed());

        cg.add(4242).unwrap();
        assert_eq!(read("cgroup.procs"), "4242");

        // Without limits, a cgroup whose controllers are not there is left as it is.
        let bare = Hierarchy::v2_at(&fake.0).cgroups("bare");
        bare.create(&Limits::default()).unwrap();
        let files: Vec<_> = std::fs::read_dir(bare.path("")).unwrap().collect();
        assert!(files.is_empty(), "{files:?}");
    }

    #[test]
    fn v2_freeze_writes_cgroup_freeze_and_waits_for_cgroup_events() {
        let fake = FakeV2::new("freeze");
        let cg = fake.cgroups();
        let dir = cg.path("");
        std::fs::create_dir_all(&dir).unwrap();
        // The kernel reports the state: here it already says frozen.
        std::fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze(true).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap(),
            "1"
        );
        // It never reports thawed: an error naming the state, after the deadline.
        let e = cg
            .freeze_within(false, Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not thawed") && e.contains("frozen 1"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap(),
            "0"
        );
        std::fs::write(dir.join("cgroup.freeze"), "1").unwrap();
        cg.thaw_now();
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap(),
            "0"
        );
    }

    #[test]
    fn records_without_a_version_are_v1() {
        let old = r#"{"root":"/sys/fs/cgroup","id":"web-1-42-0"}"#;
        let cg: Cgroups = serde_json::from_str(old).unwrap();
        assert_eq!(cg, Cgroups::new(Path::new("/sys/fs/cgroup"), "web-1-42-0"));
        assert_eq!(
            cg.path("memory"),
            Path::new("/sys/fs/cgroup/memory/landscape/web-1-42-0")
        );
        let v2 = Hierarchy {
            version: Version::V2,
            base: PathBuf::from("/sys/fs/cgroup/user.slice/x.scope"),
        }
        .cgroups("a");
        let back: Cgroups = serde_json::from_str(&serde_json::to_string(&v2).unwrap()).unwrap();
        assert_eq!(back, v2);
    }

    #[test]
    fn detect_tells_v2_from_v1_and_names_what_is_missing() {
        // A cgroup2 root (it has cgroup.controllers) whose controllers lack pids.
        let fake = FakeV2::new("detect");
        std::fs::write(fake.0.join("cgroup.controllers"), "cpuset cpu io memory\n").unwrap();
        std::fs::write(fake.0.join("cgroup.subtree_control"), "").unwrap();
        std::fs::write(fake.0.join("cgroup.procs"), "").unwrap();
        if nix::unistd::geteuid().is_root() {
            let e = Hierarchy::detect(&fake.0).unwrap_err();
            assert!(e.contains("pids controller is not delegated"), "{e}");
            std::fs::write(
                fake.0.join("cgroup.controllers"),
                "cpuset cpu io memory pids\n",
            )
            .unwrap();
            let h = Hierarchy::detect(&fake.0).unwrap();
            assert_eq!(h.version(), Version::V2);
            assert_eq!(h.base(), fake.0);
        } else {
            // Unprivileged, the base is this process's own cgroup, which the fake root
            // lacks; the fake root itself then stands in for it (as inside a container).
            let e = Hierarchy::detect(&fake.0).unwrap_err();
            assert!(e.contains("pids controller is not delegated"), "{e}");
        }
        // Not cgroup2, no v1 controllers: both named.
        let empty = FakeV2::new("detect-empty");
        let e = Hierarchy::detect(&empty.0).unwrap_err();
        assert!(
            e.contains("no cgroup v1 memory controller") && e.contains("cgroup2"),
            "{e}"
        );
    }

    #[test]
    fn v2_base_is_the_own_cgroup_or_the_one_readied_before() {
        let fake = FakeV2::new("base");
        let scope = Path::new("user.slice/user-1000.slice/app.scope");
        std::fs::create_dir_all(fake.0.join(scope)).unwrap();
        assert_eq!(v2_base(&fake.0, scope), fake.0.join(scope));
        // Not under the mount (a container sharing the host's cgroup namespace): the root.
        assert_eq!(v2_base(&fake.0, Path::new("elsewhere/x.scope")), fake.0);
        // After prepare() moved this process into `host` beside `landscape/`: the same base,
        // not a nested one.
        std::fs::create_dir_all(fake.0.join(scope).join("host")).unwrap();
        std::fs::create_dir_all(fake.0.join(scope).join("landscape")).unwrap();
        assert_eq!(v2_base(&fake.0, &scope.join("host")), fake.0.join(scope));
        // A cgroup merely named `host` elsewhere stays what it is.
        std::fs::create_dir_all(fake.0.join("other/host")).unwrap();
        assert_eq!(
            v2_base(&fake.0, Path::new("other/host")),
            fake.0.join("other/host")
        );
    }

    #[test]
    fn v2_prepare_enables_only_the_missing_controllers_for_both_levels() {
        let fake = FakeV2::new("prepare");
        std::fs::write(fake.0.join("cgroup.subtree_control"), "cpu io\n").unwrap();
        std::fs::create_dir_all(fake.0.join("landscape")).unwrap();
        std::fs::write(
            fake.0.join("landscape/cgroup.subtree_control"),
            "memory cpu pids\n",
        )
        .unwrap();
        let h = Hierarchy::v2_at(&fake.0);
        h.prepare().unwrap();
        // What a write of "+memory +pids" leaves in a plain file; the kernel would then list
        // "cpu io memory pids".
        assert_eq!(
            std::fs::read_to_string(fake.0.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        // Nothing missing one level down: not written.
        assert_eq!(
            std::fs::read_to_string(fake.0.join("landscape/cgroup.subtree_control")).unwrap(),
            "memory cpu pids\n"
        );
        // v1: nothing to ready.
        Hierarchy::detect(Path::new("/nonexistent")).unwrap_err();
        assert!(Hierarchy {
            version: Version::V1,
            base: fake.0.join("nothing-here"),
        }
        .prepare()
        .is_ok());
    }

    #[test]
    fn v1_paths_and_files_are_unchanged() {
        let cg = Cgroups::new(Path::new("/sys/fs/cgroup"), "x");
        assert_eq!(cg.version(), Version::V1);
        assert_eq!(cg.dirs().len(), 5);
        assert_eq!(
            cg.path("freezer"),
            Path::new("/sys/fs/cgroup/freezer/landscape/x")
        );
    }
}
