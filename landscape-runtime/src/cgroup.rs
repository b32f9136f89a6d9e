//! cgroup v1 limits, usage, OOM detection and freezing for one instance.
//!
//! Each instance gets `/sys/fs/cgroup/<controller>/landscape/<instance-id>` in the memory,
//! cpu, cpuacct, pids and freezer hierarchies. Only usable where the runtime may write
//! there (root, or a delegated tree); elsewhere instances run without limits and
//! [`crate::Instance::limits_enforced`] says so.

use crate::{Error, Limits, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];
const CFS_PERIOD_US: u64 = 100_000;

/// Resource usage of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    /// CPU time consumed, in nanoseconds.
    pub cpu_time_ns: u64,
    /// Current memory use in bytes.
    pub memory_current: u64,
    /// Peak memory use in bytes.
    pub memory_peak: u64,
    /// Number of processes/threads now.
    pub pids_current: u64,
}

/// The cgroups of one instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroups {
    root: PathBuf,
    id: String,
}

/// Whether this process can create cgroups under `root` (cgroup v1 with the needed
/// controllers, writable). Returns the reason when not.
pub fn availability(root: &Path) -> std::result::Result<(), String> {
    for c in CONTROLLERS {
        let dir = root.join(c);
        if !dir.join("cgroup.procs").exists() {
            return Err(format!("no cgroup v1 {c} controller at {}", dir.display()));
        }
        if nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_err() {
            return Err(format!(
                "{} is not writable by this user (cgroups are not delegated)",
                dir.display()
            ));
        }
    }
    Ok(())
}

impl Cgroups {
    /// The cgroups of instance `id` under `root` (normally `/sys/fs/cgroup`); nothing is
    /// created yet.
    pub fn new(root: &Path, id: &str) -> Self {
        Cgroups {
            root: root.to_path_buf(),
            id: id.to_string(),
        }
    }

    /// Directory of controller `c`.
    pub fn path(&self, c: &str) -> PathBuf {
        self.root.join(c).join("landscape").join(&self.id)
    }

    /// Creates the directories and applies `limits`.
    pub fn create(&self, limits: &Limits) -> Result<()> {
        for c in CONTROLLERS {
            let p = self.path(c);
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

    fn read_u64(&self, c: &str, file: &str) -> u64 {
        std::fs::read_to_string(self.path(c).join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Applies `limits` (also on a running instance: vertical scaling without restart).
    pub fn set_limits(&self, limits: &Limits) -> Result<()> {
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
        let quota = limits.cpu_cores.map_or_else(
            || "-1".to_string(),
            |c| (((c * CFS_PERIOD_US as f64) as u64).max(1000)).to_string(),
        );
        self.write("cpu", "cpu.cfs_quota_us", &quota)?;
        let pids = limits
            .pids
            .map_or_else(|| "max".to_string(), |p| p.to_string());
        self.write("pids", "pids.max", &pids)?;
        Ok(())
    }

    /// Moves process `pid` into every controller.
    pub fn add(&self, pid: i32) -> Result<()> {
        for c in CONTROLLERS {
            self.write(c, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Current usage.
    pub fn usage(&self) -> Usage {
        Usage {
            cpu_time_ns: self.read_u64("cpuacct", "cpuacct.usage"),
            memory_current: self.read_u64("memory", "memory.usage_in_bytes"),
            memory_peak: self.read_u64("memory", "memory.max_usage_in_bytes"),
            pids_current: self.read_u64("pids", "pids.current"),
        }
    }

    /// Whether the kernel OOM-killed a process of the instance.
    pub fn oom_killed(&self) -> bool {
        std::fs::read_to_string(self.path("memory").join("memory.oom_control"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0)
    }

    /// Freezes (`true`) or thaws (`false`) every process of the instance and waits until
    /// the freezer reports the new state.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        let want = if frozen { "FROZEN" } else { "THAWED" };
        self.write("freezer", "freezer.state", want)?;
        let p = self.path("freezer").join("freezer.state");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = std::fs::read_to_string(&p).unwrap_or_default();
            if now.trim() == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Cgroup {
                    path: p,
                    message: format!("still {:?} after 5 s, wanted {want}", now.trim()),
                });
            }
            std::thread::yield_now();
        }
    }

    /// Removes the directories (the instance's processes must be gone); retries briefly
    /// while the kernel finishes tearing the processes down.
    pub fn remove(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in CONTROLLERS {
            let p = self.path(c);
            loop {
                match std::fs::remove_dir(&p) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() > deadline => {
                        return Err(Error::Cgroup {
                            path: p,
                            message: format!("cannot remove: {e}"),
                        })
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        }
        Ok(())
    }
}
