//! The host side: [`Runtime`] starts instances through the helper, [`Instance`] controls
//! one of them.

use crate::cgroup::{self, Cgroups, Usage};
use crate::helper::{Event, Request, HELPER_ENV};
use crate::logs::{LogConfig, LogLine, Logs, Stream};
use crate::{Error, IdMap, InstanceSpec, Limits, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Exit {
    /// Exit code of the command, if it exited.
    pub code: Option<i32>,
    /// Signal that killed the command, if any.
    pub signal: Option<i32>,
    /// The kernel's OOM killer struck inside the instance (memory limit reached).
    pub oom_killed: bool,
    /// Why the command could not run (setup failure, command not found...).
    pub error: Option<String>,
}

impl Exit {
    pub(crate) fn failed(msg: String) -> Exit {
        Exit {
            code: Some(125),
            error: Some(msg),
            ..Default::default()
        }
    }
    /// Shell-style status: the exit code, or 128+N for signal N.
    pub fn status_code(&self) -> i32 {
        match (self.code, self.signal) {
            (_, Some(s)) => 128 + s,
            (Some(c), None) => c,
            (None, None) => 125,
        }
    }
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.signal.is_none()
    }
}

/// How the helper process is started.
#[derive(Debug, Clone, Default)]
pub enum HelperBinary {
    /// Re-execute the current program (which calls [`crate::init`] first in `main`).
    #[default]
    CurrentExe,
    /// Execute this program (which calls [`crate::init`] first in `main`).
    Path(PathBuf),
}

/// Runtime-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directory on which every instance mounts its private root tmpfs (inside its own
    /// mount namespace; must be traversable by the mapped ids); default
    /// `$TMPDIR/landscape-runtime-<uid>`.
    pub state_dir: PathBuf,
    /// The helper program.
    pub helper: HelperBinary,
    /// User whose `/etc/subuid`/`/etc/subgid` range is used when running as root.
    pub subid_user: String,
    /// Where cgroups are mounted: cgroup v1 hierarchies, or a cgroup2 mount (then, as an
    /// unprivileged user, instance cgroups go under the runtime's own delegated cgroup; see
    /// [`crate::cgroup`]).
    pub cgroup_root: PathBuf,
    /// Helpers kept started and waiting (pre-warmed slots): [`Runtime::spawn`] then skips
    /// the exec of the helper. Each idle slot is one sleeping process. Only useful where
    /// there is no fork server (see [`crate::init`]), which is cheaper still: with
    /// `prewarm = 0`, `spawn` forks helpers from the fork server when it runs.
    pub prewarm: usize,
    /// Start helpers through the fork server when there is one (default `true`; `false`
    /// always re-executes the host binary, e.g. to compare the two).
    pub fork_server: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state_dir: std::env::temp_dir().join(format!(
                "landscape-runtime-{}",
                nix::unistd::geteuid().as_raw()
            )),
            helper: HelperBinary::CurrentExe,
            subid_user: "root".into(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            prewarm: 0,
            fork_server: true,
        }
    }
}

/// Where an instance's stdout/stderr go.
#[derive(Debug, Clone, Default)]
pub enum Output {
    /// Inherit the host's stdout/stderr.
    Inherit,
    /// Discard.
    #[default]
    Null,
    /// Log files + subscribers.
    Logs(LogConfig),
}

/// Creates the state directory (0711: the mapped ids must traverse it to reach the mount
/// point) or narrows an existing one of ours to that mode.
///
/// One another user made (in a shared `/tmp`) or a symbolic link is refused: instance
/// roots, durable sockets and the network's control socket live under it. The mode is
/// set through a descriptor opened without following links, so a link put in its place
/// meanwhile is refused, never followed.
fn ensure_state_dir(dir: &Path) -> Result<()> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let refuse = |why: String| {
        Err(Error::io(
            format!("refusing the state directory {}", dir.display()),
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("it {why}; remove it or set another (RuntimeConfig::state_dir, or TMPDIR)"),
            ),
        ))
    };
    if let Some(parent) = dir.parent() {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(parent);
    }
    match nix::unistd::mkdir(dir, Mode::from_bits_truncate(0o711)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => {
            return Err(Error::nix(
                format!("create state directory {}", dir.display()),
                e,
            ))
        }
    }
    let fd = match nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
            let link = std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
            return refuse(
                if link {
                    "is a symbolic link"
                } else {
                    "is not a directory"
                }
                .into(),
            );
        }
        Err(e) => {
            return Err(Error::nix(
                format!("open state directory {}", dir.display()),
                e,
            ))
        }
    };
    let st = nix::sys::stat::fstat(&fd)
        .map_err(|e| Error::nix(format!("stat state directory {}", dir.display()), e))?;
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return refuse(format!("belongs to uid {}, not to uid {me}", st.st_uid));
    }
    if st.st_mode & 0o7777 != 0o711 {
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o711))
            .map_err(|e| Error::nix(format!("chmod state directory {}", dir.display()), e))?;
    }
    Ok(())
}

/// Starts instances. Cheap to share (`&Runtime` is all an instance needs).
#[derive(Debug)]
pub struct Runtime {
    cfg: RuntimeConfig,
    idmap: IdMap,
    /// Whether cgroups are usable, checked on first need (instances without limits never
    /// ask).
    cgroups: std::sync::OnceLock<std::result::Result<cgroup::Hierarchy, String>>,
    pool: std::sync::Arc<std::sync::Mutex<Pool>>,
}

/// The helper process of an instance.
#[derive(Debug)]
enum HelperProc {
    /// Re-executed host binary, a child of this process.
    Exec(std::process::Child),
    /// Forked by the fork server (which reaps it).
    Forked,
}

impl HelperProc {
    fn kill_and_wait(&mut self) {
        if let HelperProc::Exec(c) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wait(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            HelperProc::Exec(c) => c.wait().ok(),
            HelperProc::Forked => None,
        }
    }
}

/// A started helper waiting for its instance.
#[derive(Debug)]
struct Warm {
    child: std::process::Child,
    sock: UnixStream,
}

#[derive(Debug, Default)]
struct Pool {
    idle: Vec<Warm>,
    closed: bool,
}

fn start_helper(exe: &Path) -> Result<Warm> {
    use std::os::unix::process::CommandExt;
    let (host, helper) =
        UnixStream::pair().map_err(|e| Error::io("create the helper socket", e))?;
    let child = std::process::Command::new(exe)
        .env_clear()
        .env(HELPER_ENV, "1")
        // Like the fork server's helpers: out of the host's process group, so that the
        // terminal's Ctrl-C is the host's to handle.
        .process_group(0)
        .stdin(std::process::Stdio::from(OwnedFd::from(helper)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Error::io(format!("start the runtime helper {}", exe.display()), e))?;
    Ok(Warm { child, sock: host })
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let idle = match self.pool.lock() {
            Ok(mut p) => {
                p.closed = true;
                std::mem::take(&mut p.idle)
            }
            Err(_) => Vec::new(),
        };
        for mut w in idle {
            drop(w.sock); // EOF: the idle helper exits
            let _ = w.child.wait();
        }
        // The (empty) state directory stays: removing and re-creating it for every
        // short-lived runtime (`landscape exec`) costs a synchronous discard on some disks.
    }
}

impl Runtime {
    /// Checks the machine (user namespaces, subordinate ids when root, cgroups) and
    /// prepares the state directory.
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime> {
        let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if max == Some(0) {
            return Err(Error::Unsupported(
                "user namespaces are disabled (user.max_user_namespaces = 0); enable them with `sysctl user.max_user_namespaces=15000`".into(),
            ));
        }
        let idmap = IdMap::detect(&cfg.subid_user)?;
        ensure_state_dir(&cfg.state_dir)?;
        let rt = Runtime {
            cfg,
            idmap,
            cgroups: std::sync::OnceLock::new(),
            pool: Default::default(),
        };
        for _ in 0..rt.cfg.prewarm {
            let w = start_helper(&rt.helper_exe()?)?;
            if let Ok(mut p) = rt.pool.lock() {
                p.idle.push(w);
            }
        }
        Ok(rt)
    }

    /// A runtime with the default configuration.
    pub fn with_defaults() -> Result<Runtime> {
        Runtime::new(RuntimeConfig::default())
    }

    /// The directory every instance mounts its private root on (the host's files there,
    /// e.g. network control sockets, are invisible to instances).
    pub fn state_dir(&self) -> &Path {
        &self.cfg.state_dir
    }

    pub(crate) fn helper_path(&self) -> Result<PathBuf> {
        self.helper_exe()
    }

    /// The id mapping instances get.
    pub fn idmap(&self) -> IdMap {
        self.idmap
    }

    /// `Ok` when plans become enforced cgroup limits, else the reason they are not.
    pub fn limits_support(&self) -> std::result::Result<(), String> {
        self.cgroup_support()
            .as_ref()
            .map(|_| ())
            .map_err(Clone::clone)
    }

    /// The cgroup hierarchy instances with limits get, found and readied once (on cgroup v2
    /// that may move this process into a leaf cgroup, see [`crate::cgroup`]).
    fn cgroup_support(&self) -> &std::result::Result<cgroup::Hierarchy, String> {
        self.cgroups.get_or_init(|| {
            let h = cgroup::Hierarchy::detect(&self.cfg.cgroup_root)?;
            h.prepare()?;
            Ok(h)
        })
    }

    /// Makes `dir` writable by container user `user` by changing its owner: root mode hands
    /// the whole tree to the mapped subordinate id (host root is unmapped inside; symbolic
    /// links are not followed; entries that already belong to the user are left);
    /// unprivileged, a no-op (the runtime's own files are the container user's).
    ///
    /// For directories the runtime owns, such as a managed service's data. An instance's
    /// **app directory needs none of this**: in root mode the runtime binds it through an
    /// idmapped mount that shows its owner as the container user and stores what the
    /// instance writes under the owner's ids, so a checkout keeps its owner. (Only a
    /// directory of host root's, and where the kernel or the filesystem cannot idmap —
    /// before Linux 5.12, NFS, tmpfs before 6.3 — does the instance's start hand the app
    /// directory over like this instead.)
    pub fn adopt_dir(&self, dir: &Path, user: crate::User) -> Result<()> {
        if let IdMap::Range { .. } = self.idmap {
            let uid = self.idmap.host_uid(user.uid, user.uid);
            let gid = self.idmap.host_gid(user.gid, user.gid);
            hand_over_tree(dir, uid, gid)?;
        }
        Ok(())
    }

    fn request(&self, spec: &InstanceSpec, keep_stdin: bool) -> Result<Request> {
        spec.validate()?;
        // One count per process, not per runtime: two runtimes of one host (or one after
        // another) never give two instances the same id, hence the same cgroups, socket
        // and pipes (a finished instance's cgroups are removed after its exit is reported).
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{}-{n}", spec.name, std::process::id());
        // Moving a process into a cgroup v1 hierarchy costs ~10 ms (the kernel waits for an
        // RCU grace period), so instances get cgroups only when they have limits; pass
        // `Limits::default()` for usage and freezing without limits.
        let cgroups = match (&spec.limits, self.cgroup_support()) {
            (Some(_), Ok(h)) => Some(h.cgroups(&id)),
            _ => None,
        };
        let durable = if spec.durable {
            let dir = self.cfg.state_dir.join("durable");
            crate::network::private_dir(&dir)?;
            Some(crate::helper::Durable {
                socket: dir.join(format!("{id}.sock")),
                fifos: vec![dir.join(format!("{id}.out")), dir.join(format!("{id}.err"))],
            })
        } else {
            None
        };
        Ok(Request {
            staging: self.cfg.state_dir.clone(),
            id,
            spec: spec.clone(),
            idmap: self.idmap,
            cgroups,
            keep_stdin,
            durable,
            parked: false,
        })
    }

    fn helper_exe(&self) -> Result<PathBuf> {
        match &self.cfg.helper {
            HelperBinary::CurrentExe => std::env::current_exe()
                .map_err(|e| Error::io("find the current executable to re-run as helper", e)),
            HelperBinary::Path(p) => Ok(p.clone()),
        }
    }

    /// Number of pre-started helpers waiting now.
    pub fn idle_helpers(&self) -> usize {
        self.pool.lock().map(|p| p.idle.len()).unwrap_or(0)
    }

    /// Takes a pre-started helper (refilling the pool in the background) or starts one.
    fn helper(&self) -> Result<Warm> {
        let exe = self.helper_exe()?;
        let warm = self.pool.lock().ok().and_then(|mut p| p.idle.pop());
        if self.cfg.prewarm > 0 {
            let pool = self.pool.clone();
            let (want, exe) = (self.cfg.prewarm, exe.clone());
            std::thread::spawn(move || {
                if let Ok(mut w) = start_helper(&exe) {
                    match pool.lock() {
                        Ok(mut p) if !p.closed && p.idle.len() < want => p.idle.push(w),
                        _ => {
                            drop(w.sock);
                            let _ = w.child.wait();
                        }
                    }
                }
            });
        }
        match warm {
            Some(w) => Ok(w),
            None => start_helper(&exe),
        }
    }

    /// Starts an instance through a helper process (pre-started ones first, see
    /// [`RuntimeConfig::prewarm`]) and returns once the command has been exec'd inside the
    /// instance's namespaces, root filesystem and network (or has failed to start, which
    /// [`Instance::wait`] then reports): nothing the host does with the instance afterwards
    /// (`/proc/<pid>/root`, its network namespace) can reach the host's own files.
    pub fn spawn(&self, spec: &InstanceSpec, output: Output) -> Result<Instance> {
        let (mut inst, _) = self.launch(spec, output, false)?;
        match inst.next_event()? {
            Event::Started { pid } => {
                inst.pid = pid;
                Ok(inst)
            }
            other => Err(inst.start_failed(other)),
        }
    }

    /// Starts an instance of `spec` up to the point where only its command is missing:
    /// namespaces, root filesystem, mounts, id maps, cgroups and network attachment are
    /// ready, and init waits. [`Parked::assign`] then runs a command in it for about the
    /// cost of an exec (a pool of these makes a scale-up or a wake-up cheap). `spec`'s
    /// `process` and `hostname` are placeholders; the assigned spec must [`Parked::fits`].
    /// Its output goes to log files given at assignment. A parked instance that is dropped,
    /// or whose host goes away, is released (killed).
    pub fn park(&self, spec: &InstanceSpec) -> Result<Parked> {
        let mut placeholder = spec.clone();
        if placeholder.process.args.is_empty() {
            placeholder.process = crate::Process::argv(["true"]);
        }
        let (mut inst, readers) =
            self.launch(&placeholder, Output::Logs(LogConfig::new("")), true)?;
        match inst.next_event()? {
            Event::Parked { pid } => {
                inst.pid = pid;
                Ok(Parked {
                    inst,
                    readers,
                    spec: spec.clone(),
                })
            }
            other => Err(inst.start_failed(other)),
        }
    }

    /// Hands the request for `spec` to a helper; with `parked`, the instance's log readers
    /// are returned instead of started.
    fn launch(
        &self,
        spec: &InstanceSpec,
        output: Output,
        parked: bool,
    ) -> Result<(Instance, Vec<(Stream, OwnedFd)>)> {
        use std::os::fd::{AsFd, AsRawFd};
        let mut req = self.request(spec, false)?;
        req.parked = parked;
        if !matches!(output, Output::Logs(_)) {
            if let Some(d) = &mut req.durable {
                d.fifos.clear();
            }
        }
        // The instance's stdout/stderr, handed to the helper over its socket.
        let (out, err, readers): (OwnedFd, OwnedFd, Vec<(Stream, OwnedFd)>) = match &output {
            Output::Inherit => (
                std::io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| Error::io("dup stdout", e))?,
                std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| Error::io("dup stderr", e))?,
                Vec::new(),
            ),
            Output::Null => {
                let null = |_| {
                    std::fs::File::options()
                        .write(true)
                        .open("/dev/null")
                        .map(OwnedFd::from)
                        .map_err(|e| Error::io("open /dev/null", e))
                };
                (null(1)?, null(2)?, Vec::new())
            }
            Output::Logs(_) => match req.durable.as_ref().map(|d| d.fifos.clone()) {
                Some(fifos) => {
                    let mut ends = Vec::new();
                    for f in &fifos {
                        ends.push(open_fifo(f, true)?);
                    }
                    let (er, ew) = ends.pop().ok_or_else(|| Error::Helper("no fifo".into()))?;
                    let (or, ow) = ends.pop().ok_or_else(|| Error::Helper("no fifo".into()))?;
                    (ow, ew, vec![(Stream::Stdout, or), (Stream::Stderr, er)])
                }
                None => {
                    let pipe = || {
                        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                            .map_err(|e| Error::nix("create the log pipes", e))
                    };
                    let (or, ow) = pipe()?;
                    let (er, ew) = pipe()?;
                    (ow, ew, vec![(Stream::Stdout, or), (Stream::Stderr, er)])
                }
            },
        };
        let fds = [out.as_raw_fd(), err.as_raw_fd()];
        // From the fork server when there is one (and no pre-started pool is asked for).
        let forked = match (self.cfg.prewarm, self.cfg.fork_server) {
            (0, true) => UnixStream::pair().ok().and_then(|(host, helper)| {
                crate::forkserver::request(helper, fds[0], fds[1])
                    .ok()
                    .map(|()| host)
            }),
            _ => None,
        };
        let (helper, host, sent) = match forked {
            Some(host) => (HelperProc::Forked, host, Ok(())),
            None => {
                let mut warm = self.helper()?;
                let mut sent = crate::sys::send_fds(&warm.sock, &fds);
                if sent.is_err() {
                    // A pre-started helper died while idle: start a fresh one.
                    let _ = warm.child.kill();
                    let _ = warm.child.wait();
                    warm = start_helper(&self.helper_exe()?)?;
                    sent = crate::sys::send_fds(&warm.sock, &fds);
                }
                (HelperProc::Exec(warm.child), warm.sock, sent)
            }
        };
        drop((out, err));
        let (readers, later) = if parked {
            (Vec::new(), readers)
        } else {
            (readers, Vec::new())
        };
        let logs =
            match &output {
                Output::Logs(cfg) if !parked => {
                    let streams: Vec<(Stream, Box<dyn std::io::Read + Send>)> = readers
                        .into_iter()
                        .map(|(s, fd)| {
                            (
                                s,
                                Box::new(std::fs::File::from(fd)) as Box<dyn std::io::Read + Send>,
                            )
                        })
                        .collect();
                    Some(Logs::start(cfg, &req.id, streams).map_err(|e| {
                        Error::io(format!("open log file in {}", cfg.dir.display()), e)
                    })?)
                }
                _ => None,
            };
        let mut inst = Instance {
            id: req.id.clone(),
            pid: 0,
            writer: host
                .try_clone()
                .map_err(|e| Error::io("clone the helper socket", e))?,
            reader: BufReader::new(host),
            helper,
            cgroups: req.cgroups.clone(),
            exit: None,
            first_rx: std::sync::Mutex::new(logs.as_ref().map(|l| l.tx.subscribe())),
            logs,
            durable: req.durable.clone(),
            log_cfg: match &output {
                Output::Logs(cfg) if !parked => Some(cfg.clone()),
                _ => None,
            },
        };
        let mut line = serde_json::to_string(&req)
            .map_err(|e| Error::Helper(format!("encode request: {e}")))?;
        line.push('\n');
        if let Err(e) = sent.and_then(|()| inst.writer.write_all(line.as_bytes())) {
            inst.helper.kill_and_wait();
            inst.exit = Some(Exit::failed(e.to_string()));
            return Err(Error::Helper(format!(
                "the helper did not accept the request ({e}); does the host's main() call landscape_runtime::init() first?"
            )));
        }
        Ok((inst, later))
    }

    /// Takes over a durable instance that an earlier host started ([`Instance::record`]):
    /// connects to its helper, which reports to this host from now on; its logs continue
    /// in the same file (through the same redaction `redact`), from the first line the
    /// earlier host did not read. `Err(Error::Gone)` with the exit when the instance ended
    /// meanwhile; an error when the record names a process that is no longer the
    /// instance (a reused pid).
    pub fn adopt(
        &self,
        rec: &InstanceRecord,
        redact: Option<crate::logs::Redact>,
    ) -> Result<Instance> {
        let gone = || -> Error {
            let exit = std::fs::read_to_string(crate::helper::exit_file(&rec.socket))
                .ok()
                .and_then(|t| serde_json::from_str::<Event>(&t).ok())
                .and_then(|e| match e {
                    Event::Exited(x) => Some(x),
                    Event::Started { .. } | Event::Parked { .. } => None,
                })
                .unwrap_or_else(|| Exit::failed("ended while no host supervised it".into()));
            for f in rec
                .fifos
                .iter()
                .chain([&rec.socket, &crate::helper::exit_file(&rec.socket)])
            {
                let _ = std::fs::remove_file(f);
            }
            Error::Gone {
                instance: rec.id.clone(),
                exit: Box::new(exit),
            }
        };
        if start_time(rec.pid) != Some(rec.start_time) {
            return Err(gone());
        }
        let Ok(mut host) = UnixStream::connect(&rec.socket) else {
            return Err(gone());
        };
        host.write_all(b"adopt\n")
            .map_err(|e| Error::io(format!("adopt {}", rec.id), e))?;
        let logs = match &rec.logs {
            Some((dir, max_bytes, keep)) if rec.fifos.len() == 2 => {
                let mut cfg = LogConfig::new(dir);
                cfg.max_bytes = *max_bytes;
                cfg.keep = *keep;
                cfg.redact = redact;
                let mut streams: Vec<(Stream, Box<dyn std::io::Read + Send>)> = Vec::new();
                for (stream, f) in [Stream::Stdout, Stream::Stderr].into_iter().zip(&rec.fifos) {
                    let (r, w) = open_fifo(f, false)?;
                    drop(w);
                    streams.push((stream, Box::new(std::fs::File::from(r))));
                }
                Some((
                    Logs::start(&cfg, &rec.id, streams)
                        .map_err(|e| Error::io(format!("open log file in {}", dir.display()), e))?,
                    cfg,
                ))
            }
            _ => None,
        };
        let (logs, log_cfg) = match logs {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        let mut inst = Instance {
            id: rec.id.clone(),
            pid: rec.pid,
            writer: host
                .try_clone()
                .map_err(|e| Error::io("clone the helper socket", e))?,
            reader: BufReader::new(host),
            helper: HelperProc::Forked,
            cgroups: rec.cgroups.clone(),
            exit: None,
            first_rx: std::sync::Mutex::new(logs.as_ref().map(|l| l.tx.subscribe())),
            logs,
            durable: Some(crate::helper::Durable {
                socket: rec.socket.clone(),
                fifos: rec.fifos.clone(),
            }),
            log_cfg,
        };
        match inst.next_event() {
            Ok(Event::Started { pid }) if pid == rec.pid => Ok(inst),
            Ok(Event::Exited(exit)) => {
                inst.finish(exit.clone());
                Err(Error::Gone {
                    instance: rec.id.clone(),
                    exit: Box::new(exit),
                })
            }
            Ok(Event::Started { pid } | Event::Parked { pid }) => Err(Error::Helper(format!(
                "adopt {}: its helper reports pid {pid}, the record {}",
                rec.id, rec.pid
            ))),
            Err(e) => Err(e),
        }
    }

    /// Runs an instance to completion in the calling process, with its stdin, stdout and
    /// stderr (as `landscape exec` does). The caller must be single-threaded (no tokio
    /// runtime, no threads); `on_start` gets the host pid of the instance's init.
    pub fn run_foreground(
        &self,
        spec: &InstanceSpec,
        on_start: &mut dyn FnMut(i32),
    ) -> Result<Exit> {
        let req = self.request(spec, true)?;
        let mut emit = |ev: &Event| {
            if let Event::Started { pid } = ev {
                on_start(*pid);
            }
        };
        let exit = crate::helper::supervise(&req, None, &mut emit);
        crate::helper::teardown();
        Ok(exit)
    }
}

/// A running (or finished) instance. Dropping it kills the instance.
#[derive(Debug)]
pub struct Instance {
    id: String,
    pid: i32,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    helper: HelperProc,
    cgroups: Option<Cgroups>,
    exit: Option<Exit>,
    logs: Option<Logs>,
    /// Subscribed before the instance could print: handed to the first
    /// [`Instance::subscribe_logs`] so that it misses no line.
    first_rx: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<LogLine>>>,
    /// A durable instance's socket and pipes.
    durable: Option<crate::helper::Durable>,
    /// Where its logs go (kept for its record).
    log_cfg: Option<LogConfig>,
}

/// An instance set up and waiting for its command ([`Runtime::park`]).
pub struct Parked {
    inst: Instance,
    readers: Vec<(Stream, OwnedFd)>,
    spec: InstanceSpec,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("id", &self.inst.id)
            .field("pid", &self.inst.pid)
            .finish()
    }
}

impl Parked {
    /// Host pid of its init (the pid the instance keeps once assigned).
    pub fn pid(&self) -> i32 {
        self.inst.pid
    }

    /// The spec it was parked with.
    pub fn spec(&self) -> &InstanceSpec {
        &self.spec
    }

    /// Whether `spec` can run in this instance: the same root filesystem, app directory,
    /// mounts, user, network attachment (address), seccomp, port policy and rlimits, durability,
    /// and limits present or not alike (their values are applied at assignment). The
    /// command, environment, name and hostname are free.
    pub fn fits(&self, spec: &InstanceSpec) -> bool {
        let p = &self.spec;
        p.rootfs == spec.rootfs
            && p.app_dir == spec.app_dir
            && p.mounts == spec.mounts
            && p.user == spec.user
            && same_network(&p.network, &spec.network)
            && p.no_seccomp == spec.no_seccomp
            && p.ports == spec.ports
            && p.rlimits == spec.rlimits
            && p.read_only_root == spec.read_only_root
            && p.durable == spec.durable
            && p.limits.is_some() == spec.limits.is_some()
    }

    /// Runs `spec`'s command in this instance (its name as hostname, its environment and
    /// working directory), its output logged as `logs` says; returns once the command has
    /// been exec'd, like [`Runtime::spawn`]. `spec` must [`Parked::fits`].
    pub fn assign(mut self, spec: &InstanceSpec, logs: LogConfig) -> Result<Instance> {
        if !self.fits(spec) {
            return Err(Error::InvalidSpec(format!(
                "instance {:?} does not fit the parked instance {} (root, mounts, user, network or limits differ)",
                spec.name, self.inst.id
            )));
        }
        spec.validate()?;
        if let (Some(l), Some(cg)) = (&spec.limits, &self.inst.cgroups) {
            cg.set_limits(l)?;
        }
        let streams: Vec<(Stream, Box<dyn std::io::Read + Send>)> =
            std::mem::take(&mut self.readers)
                .into_iter()
                .map(|(s, fd)| {
                    (
                        s,
                        Box::new(std::fs::File::from(fd)) as Box<dyn std::io::Read + Send>,
                    )
                })
                .collect();
        let started = Logs::start(&logs, &self.inst.id, streams)
            .map_err(|e| Error::io(format!("open log file in {}", logs.dir.display()), e))?;
        let inst = &mut self.inst;
        *inst.first_rx.lock().unwrap_or_else(|e| e.into_inner()) = Some(started.tx.subscribe());
        inst.logs = Some(started);
        inst.log_cfg = Some(logs);
        let mut line = String::from("assign ");
        line.push_str(
            &serde_json::to_string(spec)
                .map_err(|e| Error::Helper(format!("encode the assignment: {e}")))?,
        );
        line.push('\n');
        inst.writer
            .write_all(line.as_bytes())
            .map_err(|e| Error::io("hand the parked instance its command", e))?;
        match inst.next_event()? {
            Event::Started { .. } => Ok(self.inst),
            other => Err(self.inst.start_failed(other)),
        }
    }
}

/// The same attachment but for the name of the veth's bridge end (unique per
/// [`crate::Network::attachment`] call; the parked instance's own is the one in use).
fn same_network(
    a: &Option<crate::network::Attachment>,
    b: &Option<crate::network::Attachment>,
) -> bool {
    let strip = |a: &Option<crate::network::Attachment>| {
        a.clone().map(|mut a| {
            a.veth.clear();
            a
        })
    };
    strip(a) == strip(b)
}

/// What a new host needs to adopt a durable instance ([`Instance::record`],
/// [`Runtime::adopt`]): no part of its spec (no env value) is in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Instance id.
    pub id: String,
    /// Host pid of its init.
    pub pid: i32,
    /// Its start time (clock ticks since boot, `/proc/<pid>/stat` field 22): a reused pid
    /// is never taken for the instance.
    pub start_time: u64,
    /// The helper's socket.
    pub socket: PathBuf,
    /// Its output pipes (stdout, stderr), when it logs.
    pub fifos: Vec<PathBuf>,
    /// Its cgroups.
    pub cgroups: Option<Cgroups>,
    /// Its log directory, file size limit and rotated files kept.
    pub logs: Option<(PathBuf, u64, u32)>,
}

/// Start time of process `pid` (field 22 of `/proc/<pid>/stat`).
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// How long process `pid` has run: its start time (clock ticks since boot) against
/// `CLOCK_BOOTTIME`, the clock that start time is counted on.
pub(crate) fn process_age(pid: i32) -> Option<std::time::Duration> {
    let ticks = start_time(pid)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        return None;
    }
    let now = std::time::Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    );
    let start = std::time::Duration::from_secs(ticks / hz)
        + std::time::Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz);
    now.checked_sub(start)
}

/// Creates (when `create`) and opens the named pipe `path`: (read end, write end), both
/// close-on-exec; the read end blocking.
fn open_fifo(path: &Path, create: bool) -> Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::sys::stat::Mode;
    if create {
        let _ = std::fs::remove_file(path);
        nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::nix(format!("create the pipe {}", path.display()), e))?;
    }
    let open = |flags: OFlag| {
        nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::nix(format!("open the pipe {}", path.display()), e))
    };
    let r = open(OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    let w = open(OFlag::O_WRONLY)?;
    fcntl(&r, FcntlArg::F_SETFL(OFlag::empty()))
        .map_err(|e| Error::nix("make the pipe blocking", e))?;
    Ok((r, w))
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs").field("path", &self.path).finish()
    }
}

impl Instance {
    /// Unique instance id (`<name>-<host pid>-<n>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the instance's init (pid 1 inside).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The instance's network namespace (loopback only until a network attaches to it,
    /// e.g. by moving one end of a veth pair into it).
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }

    /// Whether the instance runs under enforced cgroup limits (it asked for limits and the
    /// runtime may use cgroups here).
    pub fn limits_enforced(&self) -> bool {
        self.cgroups.is_some()
    }

    /// The instance's cgroups, where enforced.
    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.cgroups.as_ref()
    }

    fn next_event(&mut self) -> Result<Event> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => Err(Error::Helper(match self.helper.wait() {
                Some(status) => format!(
                    "the helper of {} exited ({status}) without reporting; does the host's main() call landscape_runtime::init() first?",
                    self.id
                ),
                None => format!(
                    "the helper of {} (forked by the fork server) ended without reporting: it could not be forked or was killed",
                    self.id
                ),
            })),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| Error::Helper(format!("bad event {line:?}: {e}"))),
        }
    }

    /// The error of an instance that did not reach the state asked for (`ev`: the event
    /// that came instead).
    fn start_failed(&mut self, ev: Event) -> Error {
        let exit = match ev {
            Event::Exited(exit) => exit,
            // Set-up failed before a parked instance was parked: its exit follows.
            _ => match self.wait() {
                Ok(exit) => exit,
                Err(e) => return e,
            },
        };
        self.finish(exit.clone());
        Error::Start {
            instance: self.id.clone(),
            message: exit
                .error
                .unwrap_or_else(|| "exited before starting".into()),
        }
    }

    fn finish(&mut self, exit: Exit) {
        let _ = self.helper.wait();
        if let Some(l) = &mut self.logs {
            l.finish();
        }
        if let Some(d) = &self.durable {
            for f in &d.fifos {
                let _ = std::fs::remove_file(f);
            }
            let _ = std::fs::remove_file(&d.socket);
            let _ = std::fs::remove_file(crate::helper::exit_file(&d.socket));
        }
        self.exit = Some(exit);
    }

    /// What a new host needs to adopt this instance after this one is gone (only for a
    /// [`InstanceSpec::durable`] instance that runs).
    pub fn record(&self) -> Option<InstanceRecord> {
        let d = self.durable.as_ref()?;
        if self.exit.is_some() {
            return None;
        }
        Some(InstanceRecord {
            id: self.id.clone(),
            pid: self.pid,
            start_time: start_time(self.pid)?,
            socket: d.socket.clone(),
            fifos: d.fifos.clone(),
            cgroups: self.cgroups.clone(),
            logs: self
                .log_cfg
                .as_ref()
                .map(|c| (c.dir.clone(), c.max_bytes, c.keep)),
        })
    }

    /// Waits until the instance ends.
    pub fn wait(&mut self) -> Result<Exit> {
        while self.exit.is_none() {
            match self.next_event() {
                Ok(Event::Exited(exit)) => self.finish(exit),
                Ok(Event::Started { .. } | Event::Parked { .. }) => {}
                Err(e) => {
                    self.exit = Some(Exit::failed(e.to_string()));
                    return Err(e);
                }
            }
        }
        Ok(self.exit.clone().unwrap_or_default())
    }

    /// The exit, if the instance has ended (does not block).
    pub fn try_wait(&mut self) -> Result<Option<Exit>> {
        if self.exit.is_some() {
            return Ok(self.exit.clone());
        }
        self.reader
            .get_ref()
            .set_nonblocking(true)
            .map_err(|e| Error::io("poll the helper", e))?;
        let mut probe = String::new();
        let r = self.reader.read_line(&mut probe);
        let _ = self.reader.get_ref().set_nonblocking(false);
        match r {
            Ok(0) => self.wait().map(Some),
            Ok(_) => {
                let ev: Event = serde_json::from_str(&probe)
                    .map_err(|e| Error::Helper(format!("bad event {probe:?}: {e}")))?;
                if let Event::Exited(exit) = ev {
                    self.finish(exit);
                }
                Ok(self.exit.clone())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(Error::io("read from the helper", e)),
        }
    }

    fn command(&mut self, cmd: &str) -> Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        self.writer
            .write_all(format!("{cmd}\n").as_bytes())
            .map_err(|e| Error::io(format!("send {cmd:?} to the helper of {}", self.id), e))
    }

    /// Stops the instance: SIGTERM to every process of it, SIGKILL after `grace`; returns
    /// the exit.
    pub fn stop(&mut self, grace: Duration) -> Result<Exit> {
        self.command(&format!("stop {}", grace.as_millis()))?;
        self.wait()
    }

    /// Sends SIGKILL to the instance (all its processes die).
    pub fn kill(&mut self) -> Result<()> {
        self.command("kill")
    }

    /// Sends `signal` to the instance's command.
    pub fn signal(&mut self, signal: i32) -> Result<()> {
        self.command(&format!("signal {signal}"))
    }

    fn cg(&self) -> Result<&Cgroups> {
        self.cgroups.as_ref().ok_or_else(|| {
            Error::LimitsNotEnforced(format!(
                "instance {} runs without cgroups (not root and no delegated cgroup tree)",
                self.id
            ))
        })
    }

    /// Changes the limits of the running instance.
    pub fn set_limits(&self, limits: &Limits) -> Result<()> {
        self.cg()?.set_limits(limits)
    }

    /// Current resource usage.
    pub fn usage(&self) -> Result<Usage> {
        Ok(self.cg()?.usage())
    }

    /// Freezes every process of the instance.
    pub fn freeze(&self) -> Result<()> {
        self.cg()?.freeze(true)
    }

    /// Thaws a frozen instance.
    pub fn thaw(&self) -> Result<()> {
        self.cg()?.freeze(false)
    }

    /// A handle that stops, kills or signals the instance from another thread while this
    /// one waits in [`Instance::wait`] (the instance stays owned here).
    pub fn control(&self) -> Result<InstanceControl> {
        Ok(InstanceControl {
            id: self.id.clone(),
            writer: std::sync::Arc::new(std::sync::Mutex::new(
                self.writer
                    .try_clone()
                    .map_err(|e| Error::io("clone the helper socket", e))?,
            )),
        })
    }

    /// Subscribes to the instance's log lines (with [`Output::Logs`]).
    /// The first subscriber gets every line from the start; later ones get the lines
    /// from the time they subscribe.
    pub fn subscribe_logs(&self) -> Option<tokio::sync::broadcast::Receiver<LogLine>> {
        if let Some(rx) = self
            .first_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Some(rx);
        }
        self.logs.as_ref().map(|l| l.tx.subscribe())
    }

    /// Path of the log file (with [`Output::Logs`]).
    pub fn log_path(&self) -> Option<&Path> {
        self.logs.as_ref().map(|l| l.path.as_path())
    }
}

/// Stops, kills or signals an instance owned elsewhere (see [`Instance::control`]).
/// Commands to an instance that has already ended are ignored.
#[derive(Debug, Clone)]
pub struct InstanceControl {
    id: String,
    writer: std::sync::Arc<std::sync::Mutex<UnixStream>>,
}

impl InstanceControl {
    fn command(&self, cmd: &str) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match w.write_all(format!("{cmd}\n").as_bytes()) {
            Ok(()) => Ok(()),
            // The helper is gone: the instance has ended.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::io(
                format!("send {cmd:?} to the helper of {}", self.id),
                e,
            )),
        }
    }

    /// The instance's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// SIGTERM to every process of the instance, SIGKILL after `grace` (the owner's
    /// [`Instance::wait`] returns the exit).
    pub fn stop(&self, grace: Duration) -> Result<()> {
        self.command(&format!("stop {}", grace.as_millis()))
    }

    /// SIGKILL to the instance.
    pub fn kill(&self) -> Result<()> {
        self.command("kill")
    }

    /// Sends `signal` to the instance's command.
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.command(&format!("signal {signal}"))
    }

    /// Freezes every process of the instance (memory kept, no CPU): the cgroup freezer
    /// where the instance has cgroups, SIGSTOP to its processes otherwise. Asynchronous:
    /// the helper acts on it at once.
    pub fn freeze(&self) -> Result<()> {
        self.command("freeze")
    }

    /// Undoes [`InstanceControl::freeze`].
    pub fn thaw(&self) -> Result<()> {
        self.command("thaw")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.command("kill");
            let _ = self.wait();
        }
        // A forked helper tears down after its report; `crate::settle` waits for it.
        if matches!(self.helper, HelperProc::Forked) {
            if let Ok(s) = self.writer.try_clone() {
                crate::settle::keep(s);
            }
        }
    }
}

/// The async face of the runtime for tokio hosts: the blocking parts (starting the helper,
/// waiting for the exit) run on tokio's blocking pool, never on the async workers.
impl Runtime {
    /// [`Runtime::spawn`] for async hosts.
    pub async fn spawn_async(
        self: &std::sync::Arc<Self>,
        spec: InstanceSpec,
        output: Output,
    ) -> Result<Instance> {
        let rt = self.clone();
        tokio::task::spawn_blocking(move || rt.spawn(&spec, output))
            .await
            .map_err(|e| Error::Helper(format!("spawn task failed: {e}")))?
    }
}

impl Instance {
    /// [`Instance::wait`] for async hosts; hands the instance back with its exit.
    pub async fn wait_async(mut self) -> (Instance, Result<Exit>) {
        match tokio::task::spawn_blocking(move || {
            let r = self.wait();
            (self, r)
        })
        .await
        {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// [`Instance::stop`] for async hosts.
    pub async fn stop_async(mut self, grace: Duration) -> (Instance, Result<Exit>) {
        match tokio::task::spawn_blocking(move || {
            let r = self.stop(grace);
            (self, r)
        })
        .await
        {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// Changes the owner of every entry of the tree at `dir` that is not `uid`/`gid` already,
/// without following symbolic links ([`Runtime::adopt_dir`]).
pub(crate) fn hand_over_tree(dir: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p)
            .map_err(|e| Error::io(format!("inspect {}", p.display()), e))?;
        if uid.is_some_and(|u| u != meta.uid()) || gid.is_some_and(|g| g != meta.gid()) {
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &p,
                uid.map(nix::unistd::Uid::from_raw),
                gid.map(nix::unistd::Gid::from_raw),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Error::nix(format!("chown {} to the container user", p.display()), e))?;
        }
        if meta.is_dir() {
            for e in
                std::fs::read_dir(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?
            {
                todo.push(
                    e.map_err(|e| Error::io(format!("read {}", p.display()), e))?
                        .path(),
                );
            }
        }
    }
    Ok(())
}
