//! `landscape up`: run a landscape in the foreground, like `docker compose up`.
//! Argument parsing, secrets and output only; the composition is `landscape::compose`.

use landscape::compose::{Landscape, UpOptions};
use landscape::runtime::{EventKind, Runtime};
use landscape::spec::{self, diag};
use landscape::vault::cli::{BackendKind, Options as VaultOptions};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `landscape up`.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// The landscape directory (holds ci.yml; it is the app directory).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The router's listener [default: 127.0.0.1:3000, or the next free port].
    #[arg(long, value_name = "ADDR", value_parser = parse_addr_arg)]
    listen: Option<SocketAddr>,
    /// Serve Prometheus `/metrics` (router requests and latency by route, CPU and memory
    /// per replica) and `/healthz` on this address (e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR", value_parser = parse_addr_arg)]
    admin: Option<SocketAddr>,
    /// Run in the background: a control process keeps the landscape running; `up`
    /// returns once every replica is ready (exit 1 with the reason when one is not).
    #[arg(short = 'd', long)]
    detach: bool,
    /// Skip the `test` stage.
    #[arg(long)]
    skip_tests: bool,
    /// No way out of the landscape network (by default instances reach the outside and
    /// the host's 127.0.0.1, at the subnet's .2, through slirp4netns).
    #[arg(long)]
    no_egress: bool,
    /// Off-when-unused: freeze a routed service after this long without requests
    /// (e.g. 5m; memory kept, the next request wakes it in about a millisecond).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    freeze_after: Option<Duration>,
    /// Off-when-unused: stop a routed service after this long without requests
    /// (e.g. 30m; the next request starts it and is held until it is ready).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    stop_after: Option<Duration>,
    /// Keep N pre-warmed instances (namespaces, root and network address ready) so that
    /// `scale`, restarts and wakes from stopped cost about one exec.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pool: usize,
    /// Seconds to wait for every replica to be ready.
    #[arg(long, default_value_t = 120)]
    ready_timeout: u64,
    /// Where Managed Containers' images come from.
    #[command(flatten)]
    images: crate::exec::ImageArgs,
    /// Vault store directory [default: $LANDSCAPE_VAULT_DIR, else ~/.local/share/landscape/vault].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Vault scope of the landscape's secrets.
    #[arg(long, value_name = "S", default_value = "default")]
    scope: String,
    /// Vault key file [default: $LANDSCAPE_VAULT_PASSPHRASE, else the key file
    /// ~/.local/share/landscape/vault.key when it exists].
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::ctl::parse_duration(s)
        .ok_or_else(|| format!("{s:?}: use a number with s, m, h or d (e.g. 30s, 5m)"))
}

/// `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or a bare `PORT` (both on 127.0.0.1).
fn parse_addr_arg(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let port = s
        .strip_prefix("localhost:")
        .or_else(|| s.strip_prefix(':'))
        .unwrap_or(s);
    port.parse::<u16>()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .map_err(|_| format!("{s:?}: use IP:PORT (e.g. 127.0.0.1:8080), localhost:PORT or PORT"))
}

/// Binds each address given on the command line once, so that one in use or not on
/// this host is an error before anything starts (the landscape binds it again).
fn check_listen(a: &Args) -> Result<(), String> {
    if let (Some(l), Some(ad)) = (a.listen, a.admin) {
        if l == ad && l.port() != 0 {
            return Err(format!(
                "--listen and --admin are both {l}; give them two addresses"
            ));
        }
    }
    // Both held until both are bound (0.0.0.0:P and 127.0.0.1:P clash).
    let mut held = Vec::new();
    for (flag, addr) in [("--listen", a.listen), ("--admin", a.admin)] {
        if let Some(addr) = addr {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => held.push(l),
                Err(e) => return Err(format!("cannot listen on {addr} ({flag}): {e}")),
            }
        }
    }
    Ok(())
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("landscape up: {msg}");
    ExitCode::from(code)
}

/// A DNS label from the directory's name, with a short hash of its path (two checkouts
/// of one project get two landscapes).
fn landscape_name(dir: &Path) -> String {
    let base: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_else(|| "app".into())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    let base = base.trim_matches('-');
    let mut h: u32 = 2166136261;
    for b in dir.to_string_lossy().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!(
        "{}-{:04x}",
        if base.is_empty() { "app" } else { base },
        h & 0xffff
    )
}

/// The directory under which each landscape's state directory lives: `/run/landscape`
/// as root, else `$XDG_RUNTIME_DIR/landscape`, else `$TMPDIR/landscape-<uid>`.
fn state_base() -> PathBuf {
    if euid() == 0 {
        PathBuf::from("/run/landscape")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(|d| PathBuf::from(d).join("landscape"))
            .unwrap_or_else(|| std::env::temp_dir().join(format!("landscape-{}", euid())))
    }
}

/// Refuses a state base that is not this user's own: one another user made first (in a
/// shared `/tmp`), one others may write to, or a symbolic link. Its control sockets and
/// records are trusted (`down` takes over the processes a record names).
fn check_base(base: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = match std::fs::symlink_metadata(base) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("state directory {}: {e}", base.display())),
    };
    let me = euid();
    let why = if m.file_type().is_symlink() {
        "is a symbolic link".to_string()
    } else if !m.is_dir() {
        "is not a directory".to_string()
    } else if m.uid() != me {
        format!("belongs to uid {}, not to you (uid {me})", m.uid())
    } else if m.permissions().mode() & 0o022 != 0 {
        format!(
            "may be written by others (mode {:04o})",
            m.permissions().mode() & 0o7777
        )
    } else {
        return Ok(());
    };
    Err(format!(
        "refusing the state directory {}: it {why}; remove it{}",
        base.display(),
        if me == 0 {
            String::new()
        } else {
            ", or set XDG_RUNTIME_DIR to a directory of yours".into()
        }
    ))
}

fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// Colours for `service-N |` prefixes (stable per name).
fn colour(name: &str) -> &'static str {
    const C: [&str; 6] = ["36", "33", "32", "35", "34", "31"];
    let h = name
        .bytes()
        .fold(0usize, |a, b| a.wrapping_mul(31) + b as usize);
    C[h % C.len()]
}

struct Printer {
    colour: bool,
    /// Print the services' own lines (in a background control process only until the
    /// landscape is up, for the reason of a failed start: its output file would grow
    /// with them without bound; `landscape logs` reads the rotated per-replica files).
    service_lines: std::sync::atomic::AtomicBool,
}

impl Printer {
    fn line(&self, who: &str, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = if self.colour {
            writeln!(out, "\x1b[{}m{who:>10} |\x1b[0m {text}", colour(who))
        } else {
            writeln!(out, "{who:>10} | {text}")
        };
    }
}

/// The file of a landscape directory, read and checked; diagnostics are printed.
pub(crate) struct Loaded {
    pub(crate) dir: PathBuf,
    pub(crate) shown: String,
    pub(crate) src: String,
    pub(crate) model: spec::Landscape,
}

/// Reads and validates `DIR/ci.yml`: `Err((exit code, message))` after printing the
/// diagnostics of a file with errors to `out` (warnings go to `out` too).
pub(crate) fn load(dir: &Path, out: &mut dyn Write) -> Result<Loaded, (u8, String)> {
    let file = dir.join("ci.yml");
    let shown = file.display().to_string();
    let src = match std::fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err((
                2,
                format!(
                    "no ci.yml in {}; give the landscape directory (`landscape up DIR`)",
                    dir.display()
                ),
            ))
        }
        Err(e) => return Err((2, format!("cannot read {shown}: {e}"))),
    };
    let parsed = spec::parse_str(&shown, &src);
    if parsed.has_errors() {
        let _ = write!(
            out,
            "{}",
            diag::render_human(&shown, &src, &parsed.diagnostics)
        );
        return Err((1, format!("{shown} has errors")));
    }
    let warnings: Vec<_> = parsed.warnings().cloned().collect();
    if !warnings.is_empty() {
        let _ = write!(out, "{}", diag::render_human(&shown, &src, &warnings));
    }
    let Some(model) = parsed.landscape else {
        return Err((1, format!("{shown} could not be read")));
    };
    // Managed Services against their providers' own schemas (config, secrets, plan
    // parameters, backups), positioned like the spec's own diagnostics.
    let providers = landscape::runtime::managed::Providers::builtin();
    let managed: Vec<_> = spec::upgrade(&model)
        .landscape
        .services()
        .filter(|s| s.kind() == spec::ServiceKind::ManagedService)
        .flat_map(|s| providers.validate(s))
        .collect();
    if !managed.is_empty() {
        let _ = write!(out, "{}", diag::render_human(&shown, &src, &managed));
        if managed.iter().any(|d| d.is_error()) {
            return Err((1, format!("{shown} has errors")));
        }
    }
    Ok(Loaded {
        dir: dir.to_path_buf(),
        shown,
        src,
        model,
    })
}

/// Where a landscape directory's state lives: name, state directory, control socket; an
/// error when the directory above it is not this user's own (see [`check_base`]).
pub(crate) fn locate(dir: &Path) -> Result<(String, PathBuf, PathBuf), String> {
    let name = landscape_name(dir);
    let base = state_base();
    check_base(&base)?;
    let state = base.join(&name);
    let sock = state.join("control.sock");
    Ok((name, state, sock))
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ExitCode> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(t) => Ok(t.block_on(f)),
        Err(e) => Err(fail(2, &format!("cannot start the async runtime: {e}"))),
    }
}

/// The landscape directory a command names, absolute: a directory, or a file called
/// `ci.yml` (its directory); another file is an error.
pub(crate) fn landscape_dir(arg: &Path) -> Result<PathBuf, String> {
    let path = std::fs::canonicalize(arg).map_err(|e| format!("{}: {e}", arg.display()))?;
    if path.is_dir() {
        return Ok(path);
    }
    match (path.file_name(), path.parent()) {
        (Some(n), Some(parent)) if n == "ci.yml" => Ok(parent.to_path_buf()),
        _ => Err(format!(
            "{} is a file; give the landscape directory, the one that holds ci.yml",
            arg.display()
        )),
    }
}

/// Runs `landscape up`.
pub fn run(a: Args) -> ExitCode {
    let dir = match landscape_dir(&a.dir) {
        Ok(d) => d,
        Err(e) => return fail(2, &e),
    };
    let (name, state, sock) = match locate(&dir) {
        Ok(l) => l,
        Err(e) => return fail(2, &e),
    };
    // Running already (in the background or another terminal): apply the edited file.
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        return match block_on(apply_running(&name, &sock)) {
            Ok(code) => code,
            Err(code) => code,
        };
    }
    // A background control process: the `up -d` that started it has printed the
    // warnings; its own diagnostics matter only when the file has changed since.
    let detached = std::env::var_os(DETACHED_ENV).is_some();
    let mut diags = Vec::new();
    let mut stderr = std::io::stderr();
    let out: &mut dyn Write = if detached { &mut diags } else { &mut stderr };
    let loaded = match load(&dir, out) {
        Ok(l) => l,
        Err((code, msg)) => {
            eprint!("{}", String::from_utf8_lossy(&diags));
            let msg = if code == 1 {
                format!("{msg}; nothing was started")
            } else {
                msg
            };
            return fail(code, &msg);
        }
    };
    // One `up` at a time per landscape: a second one while the first is still starting
    // (or stopping) must not touch its state.
    let lock = if let Some(fd) = detached.then(inherited_lock).flatten() {
        fd
    } else {
        if let Err(e) = private_dir(&state) {
            return fail(2, &e);
        }
        match lock_state(&name, &state) {
            Ok(l) => l,
            Err(e) => return fail(1, &e),
        }
    };
    if let Err(e) = check_listen(&a) {
        return fail(2, &format!("{e}; nothing was started"));
    }
    if a.detach {
        return detach(&a, &dir, &name, &state, &sock, lock);
    }
    let code = match block_on(up(a, loaded, (name, state, sock))) {
        Ok(code) | Err(code) => code,
    };
    drop(lock);
    code
}

/// Set for a background control process: the descriptor of the state lock its `up -d`
/// took (the lock stays held by the control process after `up -d` exits).
const LOCK_FD_ENV: &str = "LANDSCAPE_UP_LOCK_FD";

/// Takes the state directory's lock (`lock`, `flock`), without waiting: an error naming
/// the landscape when another `landscape up` holds it.
fn lock_state(name: &str, state: &Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state.join("lock");
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            format!(
                "{name} is being started or stopped by another `landscape up`{} (its state {} is locked); wait for it, then use `landscape ps`",
                lock_holder(state)
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default(),
                state.display()
            )
        } else {
            format!("cannot lock {}: {e}", path.display())
        });
    }
    // Removed and made again meanwhile by a landscape that stopped: lock the new one.
    let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        a.ino() == b.ino() && a.dev() == b.dev()
    };
    match (f.metadata(), std::fs::metadata(&path)) {
        (Ok(a), Ok(b)) if same(&a, &b) => {}
        _ => return lock_state(name, state),
    }
    write_holder(&f);
    Ok(f)
}

/// Writes this process's pid into the (locked) lock file, for `ps` and `down`.
fn write_holder(f: &std::fs::File) {
    use std::os::unix::fs::FileExt;
    let _ = f.set_len(0);
    let _ = f.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0);
}

/// The pid of the `landscape up` that holds `state`'s lock (starting, running or
/// stopping), or `None` when none does.
pub(crate) fn lock_holder(state: &Path) -> Option<i32> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::open(state.join("lock")).ok()?;
    // SAFETY: flock on a descriptor this function owns (closed on return: unlocked).
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return None;
    }
    let mut text = String::new();
    Some(
        f.read_to_string(&mut text)
            .ok()
            .and_then(|_| text.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// The state lock a background control process inherited from its `up -d`
/// ([`LOCK_FD_ENV`]); close-on-exec again, so that no process it starts holds it.
fn inherited_lock() -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    let fd: i32 = std::env::var(LOCK_FD_ENV).ok()?.parse().ok()?;
    std::env::remove_var(LOCK_FD_ENV);
    // SAFETY: fcntl on a descriptor number; it fails harmlessly when it is not open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: `up -d` passed this open descriptor for this process to own.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    write_holder(&f);
    Some(f)
}

/// `up` on a running landscape: ask its control process to re-read and apply ci.yml.
async fn apply_running(name: &str, sock: &Path) -> ExitCode {
    eprintln!("landscape up: {name} is running; applying the changes of its ci.yml");
    match landscape::control::call(sock, "POST", "/v1/apply", None).await {
        Ok((200, v)) => {
            let list = |k: &str| -> String {
                v[k].as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            for (k, what) in [
                ("replaced", "replaced (blue-green)"),
                ("added", "started"),
                ("removed", "stopped"),
                ("scaled", "scaled"),
                ("resized", "resized live"),
                ("unchanged", "unchanged"),
            ] {
                let l = list(k);
                if !l.is_empty() {
                    println!("landscape up: {what}: {l}");
                }
            }
            if v["routes_changed"].as_bool() == Some(true) {
                println!("landscape up: routes changed (served now)");
            }
            let stages = list("stages_not_rerun");
            if !stages.is_empty() {
                println!(
                    "landscape up: {stages} changed but not run again (they run at `up`; `landscape down` and `up` to run them)"
                );
            }
            ExitCode::SUCCESS
        }
        Ok((_, v)) => fail(
            1,
            v["error"]
                .as_str()
                .unwrap_or("the control process refused the change"),
        ),
        Err(e) => fail(
            2,
            &format!(
                "cannot reach the control process at {}: {e}",
                sock.display()
            ),
        ),
    }
}

/// `up -d`: starts this command again as a background control process (its own session,
/// output in the state directory) and returns once every replica is ready, or with the
/// reason when the landscape does not come up.
fn detach(
    a: &Args,
    dir: &Path,
    name: &str,
    state: &Path,
    sock: &Path,
    lock: std::fs::File,
) -> ExitCode {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let log_path = state.join("up.log");
    let log = match create_private(&log_path) {
        Ok(f) => f,
        Err(e) => return fail(2, &format!("cannot create {}: {e}", log_path.display())),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(2, &format!("cannot find this program: {e}")),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("up").arg(dir);
    if let Some(l) = a.listen {
        cmd.arg("--listen").arg(l.to_string());
    }
    if a.skip_tests {
        cmd.arg("--skip-tests");
    }
    if a.no_egress {
        cmd.arg("--no-egress");
    }
    if let Some(ad) = a.admin {
        cmd.arg("--admin").arg(ad.to_string());
    }
    if let Some(d) = a.freeze_after {
        cmd.arg("--freeze-after")
            .arg(format!("{}ms", d.as_millis()));
    }
    if let Some(d) = a.stop_after {
        cmd.arg("--stop-after").arg(format!("{}ms", d.as_millis()));
    }
    cmd.arg("--ready-timeout").arg(a.ready_timeout.to_string());
    if a.pool > 0 {
        cmd.arg("--pool").arg(a.pool.to_string());
    }
    a.images.forward(&mut cmd);
    if let Some(s) = &a.store {
        cmd.arg("--store").arg(s);
    }
    cmd.arg("--scope").arg(&a.scope);
    if let Some(k) = &a.key_file {
        cmd.arg("--key-file").arg(k);
    }
    let Ok(log2) = log.try_clone() else {
        return fail(2, "cannot duplicate the log file");
    };
    let lock_fd = lock.as_raw_fd();
    cmd.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .env("NO_COLOR", "1")
        .env(DETACHED_ENV, "1")
        .env(LOCK_FD_ENV, lock_fd.to_string());
    // SAFETY: setsid and fcntl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The lock goes on in the control process (this side's copy closes at exit).
            if libc::fcntl(lock_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(2, &format!("cannot start the control process: {e}")),
    };
    eprintln!(
        "landscape up: {name} starting in the background (control pid {}, output in {})",
        child.id(),
        log_path.display()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(a.ready_timeout + 600);
    let stage_line = |l: &str| {
        let who = l.split(" | ").next().unwrap_or("").trim_start();
        matches!(who, "pull" | "prepare" | "test")
    };
    // The last lines of the output that `progress` did not show (the stages' lines were
    // shown as they came): services' lines and the reason.
    let tail = |n: usize| {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let start = format!("landscape up: {name} from ");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !stage_line(l) && !l.starts_with(&start))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(2, &format!("cannot start the async runtime: {e}")),
    };
    // While it comes up: the progress of pulls and stages, as the foreground shows it.
    let mut shown = 0usize;
    let mut progress = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let done = text.rfind('\n').map_or(0, |i| i + 1);
        if done > shown {
            for l in text[shown..done].lines().filter(|l| stage_line(l)) {
                eprintln!("{l}");
            }
            shown = done;
        }
    };
    loop {
        progress();
        if let Ok(Some(st)) = child.try_wait() {
            progress();
            eprintln!("{}", tail(30));
            if landscape::compose::Landscape::has_record(state) {
                // A take-over that failed before it reached the replicas: they still run.
                return fail(
                    1,
                    &format!("{name} was not taken over (the control process exited with {st})"),
                );
            }
            let _ = std::fs::remove_dir_all(state);
            return fail(
                1,
                &format!("{name} did not come up (the control process exited with {st}); nothing is left running"),
            );
        }
        if std::time::Instant::now() > deadline {
            // SIGTERM first: the control process stops what it started (SIGKILL would
            // leave it running); SIGKILL only when it does not end.
            // SAFETY: kill on our own child's pid, which is not reaped yet.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let stop_by = std::time::Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < stop_by {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            progress();
            eprintln!("{}", tail(30));
            return fail(1, &format!("{name} did not come up in time; stopped it"));
        }
        if let Ok((200, v)) = rt.block_on(landscape::control::call(sock, "GET", "/v1/status", None))
        {
            if v["ready"].as_bool() == Some(true) {
                // What a take-over found (the control process printed it).
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                for l in log.lines().filter(|l| {
                    l.contains("taking over the replicas")
                        || ["adopted (", "restarted (", "replaced (", "stopped ("]
                            .iter()
                            .any(|k| l.starts_with(&format!("landscape up: {k}")))
                }) {
                    eprintln!("{l}");
                }
                let listen = v["listen"].as_str().unwrap_or_default();
                for r in v["routes"].as_array().into_iter().flatten() {
                    let (path, host) = (r[0].as_str().unwrap_or("/"), r[1].as_str().unwrap_or(""));
                    let h = if host.is_empty() {
                        String::new()
                    } else {
                        format!(" (Host: {host})")
                    };
                    println!("landscape up: ready: http://{listen}{path}{h}");
                }
                println!(
                    "landscape up: {name} runs in the background; `landscape ps {}`, `landscape logs -f {0}`, `landscape down {0}`",
                    dir.display()
                );
                return ExitCode::SUCCESS;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes the state directory of a landscape that has stopped; a background control
/// process keeps its output (`up.log`) for the `up -d` that waits for it, which removes
/// the rest.
fn remove_state(state: &Path) {
    if std::env::var_os(DETACHED_ENV).is_some() {
        for e in std::fs::read_dir(state).into_iter().flatten().flatten() {
            if e.file_name() != "up.log" {
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
    } else {
        let _ = std::fs::remove_dir_all(state);
    }
}

/// Creates (or truncates) a state file, 0600 like the rest of the state directory.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Set in the environment of a background control process (`up -d`).
const DETACHED_ENV: &str = "LANDSCAPE_UP_DETACHED";

/// Creates a state directory `dir` (and parents) with mode 0700, and checks again that
/// the directory above it is this user's own (another user may have made it meanwhile).
pub(crate) fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    check_base(&state_base())?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    check_base(&state_base())
}

async fn resolve_env(
    a: &Args,
    file: &str,
    src: &str,
    model: &spec::Landscape,
) -> Result<
    (
        BTreeMap<String, Vec<(String, String)>>,
        Vec<landscape::vault::SecretValue>,
    ),
    (u8, String),
> {
    use landscape::vault::resolve::{self, Context, ResolveError};
    let needs_vault = model.services().any(|s| {
        s.env().any(|(_, v)| {
            v.value
                .value
                .references()
                .any(|r| matches!(r, spec::Reference::Vault(_)))
        }) || s.secrets.iter().flat_map(|m| m.values()).any(|t| {
            t.value
                .references()
                .any(|r| matches!(r, spec::Reference::Vault(_)))
        })
    });
    let mut env = BTreeMap::new();
    if !needs_vault {
        for s in model.services() {
            let render =
                |t: &spec::Template| t.render(|_| Ok::<_, ()>(String::new())).unwrap_or_default();
            // A Managed Service's `secrets` travel as its env (see compose::UpOptions).
            let vars = s
                .env()
                .map(|(k, v)| (k.clone(), render(&v.value.value)))
                .chain(
                    s.secrets
                        .iter()
                        .flat_map(|m| m.iter())
                        .map(|(k, t)| (k.clone(), render(&t.value))),
                )
                .collect();
            env.insert(s.name.value.clone(), vars);
        }
        return Ok((env, Vec::new()));
    }
    // Without --key-file: $LANDSCAPE_VAULT_PASSPHRASE, else the default key file (as
    // `landscape vault` uses them).
    let key_file = a.key_file.clone();
    let opts = VaultOptions {
        store: a.store.clone(),
        scope: Some(a.scope.clone()),
        shared: Vec::new(),
        backend: BackendKind::File,
        addr: None,
        mount: None,
        key_file,
        actor: None,
    };
    let (vault, scope) = landscape::vault::cli::open_vault(&opts).map_err(|e| {
        (
            2,
            format!("{file} uses vault secrets, but the vault cannot be opened: {e}"),
        )
    })?;
    let mut ctx = Context::new(scope.clone());
    ctx.workspace_id = Some(String::new());
    ctx.dev_domain = Some(String::new());
    ctx.team_id = Some(String::new());
    match resolve::resolve(&vault, file, model, &ctx).await {
        Ok(r) => {
            let mut secrets = Vec::new();
            for s in r.services {
                // The values that came from the vault are redacted from every log line.
                let secret_keys: Vec<&String> = model
                    .service(&s.service)
                    .into_iter()
                    .flat_map(|svc| svc.env())
                    .filter(|(_, v)| {
                        v.value
                            .value
                            .references()
                            .any(|r| matches!(r, spec::Reference::Vault(_)))
                    })
                    .map(|(k, _)| k)
                    .collect();
                let mut vars = Vec::new();
                for (k, v) in s.vars {
                    vars.push((k.clone(), String::from_utf8_lossy(v.expose()).into_owned()));
                    if secret_keys.contains(&&k) {
                        secrets.push(v);
                    }
                }
                // A Managed Service's `secrets` travel as its env (see compose::UpOptions);
                // every one is redacted.
                for (k, v) in s.secrets {
                    vars.push((k, String::from_utf8_lossy(v.expose()).into_owned()));
                    secrets.push(v);
                }
                env.insert(s.service, vars);
            }
            Ok((env, secrets))
        }
        Err(ResolveError::Problems(mut p)) => {
            resolve::refine_positions(&mut p, src);
            let mut msg: String = p.iter().map(|problem| format!("{problem}\n")).collect();
            msg.push_str(&format!(
                "{} secret reference(s) do not resolve in vault scope {scope:?}; store them with `landscape vault set NAME`",
                p.len()
            ));
            Err((1, msg))
        }
        Err(ResolveError::Vault(e)) => Err((2, format!("vault: {e}"))),
    }
}

async fn free_listener(explicit: Option<SocketAddr>) -> SocketAddr {
    if let Some(a) = explicit {
        return a;
    }
    for port in 3000..3100 {
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(a).is_ok() {
            return a;
        }
    }
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The redaction hook over the vault values resolved so far (a reload adds new ones).
type Secrets = Arc<std::sync::RwLock<Arc<landscape::vault::redact::Redactor>>>;

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP, from the start: one that comes while the
/// landscape is still starting stops what has started, never leaves it behind.
fn stop_signals() -> Result<tokio::sync::watch::Receiver<bool>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| format!("cannot handle {name}: {e}"))
    };
    // (Once handled, a signal no longer has its default action, a second Ctrl-C included.)
    let mut int = sig(SignalKind::interrupt(), "SIGINT")?;
    let mut term = sig(SignalKind::terminate(), "SIGTERM")?;
    let mut hup = sig(SignalKind::hangup(), "SIGHUP")?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// The foreground `up` (also the background control process of `up -d`), with the
/// name, state directory (made and locked by [`run`]) and control socket of [`locate`].
async fn up(a: Args, loaded: Loaded, (name, state, sock): (String, PathBuf, PathBuf)) -> ExitCode {
    let Loaded {
        dir,
        shown: file,
        src,
        model,
    } = loaded;
    let stop = match stop_signals() {
        Ok(s) => s,
        Err(e) => return fail(2, &e),
    };
    let (env, secrets) = match resolve_env(&a, &file, &src, &model).await {
        Ok(v) => v,
        Err((code, msg)) => return fail(code, &format!("{msg}; nothing was started")),
    };
    let runtime = match Runtime::with_defaults() {
        Ok(r) => Arc::new(r),
        Err(e) => return fail(2, &e.to_string()),
    };
    let mut opts = UpOptions::new(name.clone(), dir.clone(), state.clone());
    // A record left by a control process that was killed: take its replicas over, on the
    // router address it had (unless another is given).
    let adopting = Landscape::has_record(&state);
    let recorded_listen = std::fs::read_to_string(state.join("listen"))
        .ok()
        .and_then(|t| t.trim().parse::<SocketAddr>().ok());
    opts.listen = match (a.listen, adopting, recorded_listen) {
        (Some(l), _, _) => l,
        (None, true, Some(l)) => l,
        _ => free_listener(None).await,
    };
    opts.stop = Some(stop.clone());
    opts.run_tests = !a.skip_tests;
    opts.egress = !a.no_egress;
    opts.pool = a.pool;
    opts.image_cache = a.images.cache();
    opts.registry = a.images.registry();
    opts.idle.default = landscape::compose::IdlePolicy {
        freeze_after: a.freeze_after,
        stop_after: a.stop_after,
    };
    let known: Secrets = Arc::new(std::sync::RwLock::new(Arc::new(
        landscape::vault::redact::Redactor::new(secrets.iter()),
    )));
    let mut all_secrets = secrets;
    {
        let known = known.clone();
        opts.redact = Some(Arc::new(move |line: &str| {
            let r = known.read().unwrap_or_else(|e| e.into_inner()).clone();
            String::from_utf8_lossy(&r.redact(line.as_bytes())).into_owned()
        }));
    }
    let printer = Arc::new(Printer {
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        service_lines: std::sync::atomic::AtomicBool::new(true),
    });
    // Stage output while `up` runs prepare and test: the supervisor is made inside `up`,
    // so its events are printed as they come through a channel set up by a first task.
    eprintln!("landscape up: {name} from {file}");
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let p2 = printer.clone();
    let printer_task = tokio::spawn(async move {
        while let Some(ev) = ev_rx.recv().await {
            print_event(&p2, ev);
        }
    });
    let started = if adopting {
        eprintln!(
            "landscape up: {name}: taking over the replicas left by a control process that ended"
        );
        Landscape::adopt(runtime, &model, env, opts, ev_tx)
            .await
            .map(|(l, report)| {
                for (what, list) in [
                    ("adopted (same processes)", &report.adopted),
                    ("restarted (they had ended)", &report.restarted),
                    ("replaced (changed meanwhile)", &report.replaced),
                    ("stopped (no longer defined)", &report.removed),
                ] {
                    if !list.is_empty() {
                        eprintln!("landscape up: {what}: {}", list.join(", "));
                    }
                }
                l
            })
    } else {
        Landscape::up_with_events(runtime, &model, env, opts, ev_tx).await
    };
    let land = match started {
        Ok(l) => {
            let _ = create_private(&state.join("listen"))
                .and_then(|mut f| f.write_all(l.local_addr().to_string().as_bytes()));
            Arc::new(l)
        }
        Err(e) => {
            // A failed step's output has been printed as it came (through the events),
            // its last lines right above this message; unless the printer is behind.
            let printed = tokio::time::timeout(Duration::from_secs(2), printer_task)
                .await
                .is_ok();
            if let (false, landscape::compose::UpError::Stage(f)) = (printed, &e) {
                for l in &f.last_lines {
                    eprintln!("    {l}");
                }
            }
            // A take-over that failed before it reached the replicas (a pull, the
            // listener, a stop asked for): they still run, and their record stays for
            // the next try (or `down`).
            if adopting && !matches!(e, landscape::compose::UpError::Runtime(_)) {
                return fail(
                    1,
                    &format!(
                        "{e}; the replicas of the ended control process still run: `landscape up -d {}` again takes them over, `landscape down {0}` stops them",
                        dir.display()
                    ),
                );
            }
            remove_state(&state);
            return fail(1, &format!("{e}; nothing is left running"));
        }
    };
    if let Some(admin) = a.admin {
        match tokio::net::TcpListener::bind(admin).await {
            Ok(l) => {
                let land = land.clone();
                tokio::spawn(async move { land.serve_admin(l).await });
                eprintln!("landscape up: metrics at http://{admin}/metrics");
            }
            Err(e) => {
                land.shutdown().await;
                remove_state(&state);
                return fail(
                    2,
                    &format!("cannot listen on {admin} (--admin): {e}; nothing is left running"),
                );
            }
        }
    }
    // The control API: ps, logs -f, scale, restart, down, and `up` again (apply).
    let listener = match landscape::control::bind(&sock).await {
        Ok(l) => l,
        Err(e) => {
            land.shutdown().await;
            remove_state(&state);
            return fail(2, &format!("control socket {}: {e}", sock.display()));
        }
    };
    let reload: landscape::control::Reload = {
        let (land, a, dir, known) = (land.clone(), a.clone(), dir.clone(), known.clone());
        let ready_timeout = Duration::from_secs(a.ready_timeout);
        let all = Arc::new(tokio::sync::Mutex::new(std::mem::take(&mut all_secrets)));
        Arc::new(move || {
            let (land, a, dir, known, all) = (
                land.clone(),
                a.clone(),
                dir.clone(),
                known.clone(),
                all.clone(),
            );
            Box::pin(async move {
                let mut diags = Vec::new();
                let l = load(&dir, &mut diags).map_err(|(_, m)| {
                    format!(
                        "{}{m}; nothing was changed",
                        String::from_utf8_lossy(&diags)
                    )
                })?;
                let (env, secrets) = resolve_env(&a, &l.shown, &l.src, &l.model)
                    .await
                    .map_err(|(_, m)| format!("{m}; nothing was changed"))?;
                {
                    let mut all = all.lock().await;
                    all.extend(secrets);
                    *known.write().unwrap_or_else(|e| e.into_inner()) =
                        Arc::new(landscape::vault::redact::Redactor::new(all.iter()));
                }
                eprintln!("landscape up: applying the changes of {}", l.shown);
                land.apply(&l.model, env, ready_timeout)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    };
    let (down_tx, down_rx) = tokio::sync::oneshot::channel::<()>();
    {
        let land = land.clone();
        tokio::spawn(async move {
            landscape::control::serve(listener, land, reload).await;
            let _ = down_tx.send(());
        });
    }
    let mut stopped = stop.clone();
    let ready = tokio::select! {
        r = land.wait_ready(Duration::from_secs(a.ready_timeout)) => r.map_err(|e| e.to_string()),
        _ = stopped.wait_for(|s| *s) => Err("stopped before it was ready".to_string()),
    };
    if let Err(e) = ready {
        eprintln!("landscape up: {e}");
        land.shutdown().await;
        remove_state(&state);
        eprintln!("landscape up: nothing is left running");
        return ExitCode::from(1);
    }
    for (path, host) in land.routes() {
        let h = if host.is_empty() {
            String::new()
        } else {
            format!(" (Host: {host})")
        };
        println!("landscape up: ready: http://{}{path}{h}", land.local_addr());
    }
    if std::env::var_os(DETACHED_ENV).is_some() {
        printer
            .service_lines
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
    println!("landscape up: press Ctrl-C to stop");
    // (A closed terminal, SIGHUP, stops it too: the replicas are in their own process
    // group and do not get the hangup themselves.)
    let mut stopped = stop.clone();
    tokio::select! {
        _ = stopped.wait_for(|s| *s) => {}
        _ = down_rx => {}
    }
    eprintln!("landscape up: stopping");
    land.shutdown().await;
    remove_state(&state);
    // The events of the stop have been printed as they came; the channel stays open as
    // long as the landscape value lives, so the printer is not waited for.
    printer_task.abort();
    eprintln!("landscape up: stopped");
    ExitCode::SUCCESS
}

fn print_event(p: &Printer, ev: landscape::runtime::Event) {
    match ev.kind {
        EventKind::StepStarted { stage, step } => p.line(&stage, &format!("$ {step}")),
        EventKind::StepOutput { stage, line, .. } => p.line(&stage, &line.text),
        EventKind::StepFinished {
            stage,
            step,
            exit_code,
        } if exit_code != 0 => p.line(
            &stage,
            &format!("step {step:?} failed with exit code {exit_code}"),
        ),
        EventKind::ImageProgress {
            service,
            image,
            message,
        } => p.line("pull", &format!("{service}: {image}: {message}")),
        EventKind::Log {
            service,
            replica,
            line,
        } if p.service_lines.load(std::sync::atomic::Ordering::Relaxed) => {
            p.line(&format!("{service}-{replica}"), &line.text)
        }
        EventKind::ReplicaReady { service, replica } => {
            p.line(&format!("{service}-{replica}"), "ready")
        }
        EventKind::ReplicaUnhealthy {
            service,
            replica,
            reason,
        } => p.line(
            &format!("{service}-{replica}"),
            &format!("unhealthy: {reason}"),
        ),
        EventKind::ReplicaExited {
            service,
            replica,
            exit,
        } => p.line(
            &format!("{service}-{replica}"),
            &format!(
                "exited: {}",
                exit.error
                    .clone()
                    .unwrap_or_else(|| format!("status {}", exit.status_code()))
            ),
        ),
        EventKind::ReplicaRestarting {
            service,
            replica,
            in_ms,
            crash_loop,
            ..
        } => p.line(
            &format!("{service}-{replica}"),
            &format!(
                "restarting in {in_ms} ms{}",
                if crash_loop { " (crash loop)" } else { "" }
            ),
        ),
        _ => {}
    }
}
