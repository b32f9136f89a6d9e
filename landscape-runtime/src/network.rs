//! The landscape network: one private network per landscape, every instance its own
//! address on it, services found by name, sockets into it for the router and the probes.
//!
//! * **The holder.** [`Network::create`] starts a small process (the host binary re-executed
//!   with [`crate::HELPER_ENV`]`=network`, which [`crate::init`] turns into the holder). It
//!   creates the landscape's network namespace — owned by a user namespace of its own when
//!   the runtime is unprivileged (uid 0 inside ↦ the runtime's uid), directly as root —
//!   with a bridge (`lsbr0`, the subnet's first address, a fixed MAC) and loopback. It
//!   then serves, single-threaded: the landscape's DNS on the bridge address (port 53,
//!   UDP), and a control socket (`<state>/net/<name>.sock`, in a 0700 directory) on which
//!   the host sets the DNS names and asks for sockets. It runs in a session of its own and
//!   outlives a host that is killed (so that a restarted host can re-adopt the landscape);
//!   [`Network::shutdown`] (or dropping the last handle) ends it.
//! * **Attaching** is part of starting an instance: an [`InstanceSpec`](crate::InstanceSpec)
//!   with [`Attachment`] makes the instance's helper enter the landscape's namespaces
//!   (the holder's user namespace when unprivileged, so that the instance's own user and
//!   network namespaces nest under it), create a veth pair — one end on the bridge, the
//!   other created directly in the instance's network namespace as `eth0` — before the
//!   instance's init is released; init gives `eth0` its address and the default route via
//!   the bridge, and writes `/etc/hosts` and `/etc/resolv.conf` (the landscape's DNS) into
//!   its throwaway root. All by netlink (`netlink.rs`), no `ip` commands. When the
//!   instance ends the helper deletes the bridge end, which removes the pair at once.
//! * **Names.** [`Network::set_names`] replaces the table of the landscape's DNS: every
//!   service name resolves to the addresses given (the supervisor gives the ready
//!   replicas), round robin, TTL 0; other names get NXDOMAIN. Why a DNS responder and not
//!   a hosts file per instance: one table update (one message to the holder) instead of a
//!   rewrite of every instance's `/etc/hosts` on each change, and the answers can rotate per
//!   query (glibc picks the first address of a hosts file every time).
//! * **Sockets for the host.** The router and the health probes live in the host's network
//!   namespace and connect through [`Network::tcp_socket`]: a TCP socket created by the
//!   holder *inside* the landscape network and handed over unconnected (SCM_RIGHTS, 32 at a
//!   time, pooled). A socket keeps the namespace it was created in, so `connect` from the
//!   host reaches instance addresses with the kernel's own TCP stack and no per-connection
//!   round trip to the holder.

use crate::{sys, Error, Result, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Name of the bridge inside every landscape network.
pub const BRIDGE: &str = "lsbr0";

/// Settings of one landscape network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Landscape name (a DNS label): names the control socket, and `SERVICE.NAME` resolves
    /// as `SERVICE` does.
    pub name: String,
    /// Network address of the subnet; default 10.88.0.0. Every landscape has a namespace
    /// of its own, so landscapes may use the same subnet.
    pub subnet: Ipv4Addr,
    /// Prefix length (16-29); default 24. The first address is the bridge (DNS), the
    /// second and third belong to egress (gateway to the outside and the host's loopback,
    /// upstream DNS), the last is broadcast; instances get the fourth onwards.
    pub prefix: u8,
    /// MTU of the veth pairs (default: the kernel's, 1500).
    pub mtu: Option<u32>,
    /// Directory of the control sockets; default `<runtime state dir>/net`.
    pub control_dir: Option<PathBuf>,
    /// Egress: instances reach the outside world (and the host's 127.0.0.1 at the
    /// subnet's second address) through `slirp4netns`, and the landscape's DNS forwards
    /// names it does not own. Off by default; [`Network::create`] fails with a clear error
    /// when it is on and `slirp4netns` (or, unprivileged, `/dev/net/tun`) is missing.
    #[serde(default)]
    pub egress: bool,
}

impl NetworkConfig {
    /// Defaults for a landscape called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        NetworkConfig {
            name: name.into(),
            subnet: Ipv4Addr::new(10, 88, 0, 0),
            prefix: 24,
            mtu: None,
            control_dir: None,
            egress: false,
        }
    }

    /// How many instances a network of this shape has addresses for (the subnet's hosts
    /// without the network and broadcast addresses and the three the runtime keeps: 251
    /// on a /24). Prefixes outside 16-29 (refused by [`Network::create`]) count as /29.
    pub fn capacity(&self) -> u32 {
        (1u32 << (32 - self.prefix.clamp(16, 29))) - 1 - FIRST_HOST
    }

    fn validate(&self) -> Result<()> {
        let label_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.name.starts_with('-')
            && !self.name.ends_with('-');
        if !label_ok {
            return Err(Error::InvalidSpec(format!(
                "network name {:?}: use 1-63 lower-case letters, digits and '-' (a DNS label)",
                self.name
            )));
        }
        if !(16..=29).contains(&self.prefix) {
            return Err(Error::InvalidSpec(format!(
                "network {}: prefix /{} is out of range; use /16 to /29",
                self.name, self.prefix
            )));
        }
        let mask = u32::MAX << (32 - self.prefix);
        if u32::from(self.subnet) & !mask != 0 {
            return Err(Error::InvalidSpec(format!(
                "network {}: {}/{} has host bits set; use {}/{}",
                self.name,
                self.subnet,
                self.prefix,
                Ipv4Addr::from(u32::from(self.subnet) & mask),
                self.prefix
            )));
        }
        Ok(())
    }
}

/// How an instance joins a landscape network (part of [`crate::InstanceSpec`]); made by
/// [`Network::attachment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Pid of the network's holder process.
    pub holder_pid: i32,
    /// Inode of the holder's network namespace (checked before entering it, so that a
    /// reused pid is never entered).
    pub netns_inode: u64,
    /// The instance's user namespace nests under the holder's (unprivileged runtime).
    pub nested: bool,
    /// The bridge-side name of the instance's veth pair.
    pub veth: String,
    /// The instance's address.
    pub address: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// DNS server (the bridge).
    pub gateway: Ipv4Addr,
    /// The default route (egress on: the egress gateway); none without egress, so that
    /// an address outside the subnet fails at once with "network unreachable".
    #[serde(default)]
    pub default_route: Option<Ipv4Addr>,
    /// The DNS search domain (the landscape's name).
    pub domain: String,
    /// MTU of the veth pair.
    pub mtu: Option<u32>,
}

/// What the host sends on the control socket, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
enum Control {
    /// Replace the DNS table.
    Names(BTreeMap<String, Vec<Ipv4Addr>>),
    /// Hand over this many unconnected TCP sockets (at most [`sys::MAX_FDS`]).
    Sockets(usize),
    /// Egress is up: put `tap` (made by slirp4netns) on the bridge and forward foreign
    /// DNS names to `dns`.
    Egress { tap: String, dns: Ipv4Addr },
    /// Exit.
    Shutdown,
}

/// What the holder is started with (one JSON line on its stdin).
#[derive(Debug, Serialize, Deserialize)]
struct HolderConfig {
    net: NetworkConfig,
    control: PathBuf,
    uid: u32,
    gid: u32,
}

/// What a new host needs to take over a running network ([`Network::record`],
/// [`Network::adopt`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Its configuration.
    pub cfg: NetworkConfig,
    /// The holder's pid.
    pub holder_pid: i32,
    /// Inode of the holder's network namespace (a reused pid is never taken for it).
    pub netns_inode: u64,
    /// Unprivileged (nested user namespaces).
    pub nested: bool,
    /// The control socket.
    pub control: PathBuf,
}

/// A running landscape network. Dropping it ends the holder (instances still attached keep
/// their own namespaces until they stop, but lose the network).
#[derive(Debug)]
pub struct Network {
    cfg: NetworkConfig,
    holder_pid: i32,
    netns_inode: u64,
    nested: bool,
    control: PathBuf,
    child: Mutex<Option<std::process::Child>>,
    ctl: Mutex<Option<BufReader<UnixStream>>>,
    used: Mutex<BTreeSet<u32>>,
    sockets: Mutex<Vec<OwnedFd>>,
    seq: std::sync::atomic::AtomicU32,
    egress: Mutex<Option<std::process::Child>>,
}

/// Host numbers below this are never given to instances (network, bridge, egress gateway,
/// egress DNS).
const FIRST_HOST: u32 = 4;

/// The tap device slirp4netns makes in the landscape network.
const TAP: &str = "lstap0";

fn egress_gateway_of(cfg: &NetworkConfig) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cfg.subnet) + 2)
}

fn egress_dns_of(cfg: &NetworkConfig) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cfg.subnet) + 3)
}

/// Where slirp4netns's output goes: beside the network's control socket.
fn egress_log(control: &Path, name: &str) -> PathBuf {
    control.with_file_name(format!("{name}.egress.log"))
}

/// `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// What egress needs, checked before anything starts: the `slirp4netns` binary and, for an
/// unprivileged runtime, a `/dev/net/tun` it may open.
fn egress_preflight(cfg: &NetworkConfig) -> Result<PathBuf> {
    let off = "or turn egress off for this landscape (NetworkConfig::egress = false; `landscape up --no-egress`)";
    let slirp = on_path("slirp4netns").ok_or_else(|| {
        Error::InvalidSpec(format!(
            "network {}: egress is on but slirp4netns is not installed: install it (Debian: apt install slirp4netns) {off}",
            cfg.name
        ))
    })?;
    if nix::unistd::geteuid().as_raw() != 0 {
        if let Err(e) = std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
        {
            return Err(Error::InvalidSpec(format!(
                "network {}: egress is on but /dev/net/tun cannot be opened ({e}): make it usable by everyone as udev does (chmod 0666 /dev/net/tun) {off}",
                cfg.name
            )));
        }
    }
    Ok(slirp)
}

fn gateway_of(cfg: &NetworkConfig) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cfg.subnet) + 1)
}

fn netns_inode(pid: i32) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino())
}

impl Network {
    /// Creates the network of landscape `cfg.name`: starts its holder and waits until the
    /// bridge, the DNS and the control socket are up.
    pub fn create(runtime: &Runtime, cfg: NetworkConfig) -> Result<Network> {
        cfg.validate()?;
        let slirp = if cfg.egress {
            Some(egress_preflight(&cfg)?)
        } else {
            None
        };
        let dir = cfg
            .control_dir
            .clone()
            .unwrap_or_else(|| runtime.state_dir().join("net"));
        private_dir(&dir)?;
        let control = dir.join(format!("{}.sock", cfg.name));
        if UnixStream::connect(&control).is_ok() {
            return Err(Error::InvalidSpec(format!(
                "network {}: already running (control socket {}); stop it first or choose another name",
                cfg.name,
                control.display()
            )));
        }
        let _ = std::fs::remove_file(&control);
        let exe = runtime.helper_path()?;
        use std::os::unix::process::CommandExt;
        // Egress: slirp4netns exits when the holder does (its exit fd is the read end of a
        // pipe whose only write end the holder keeps as fd 3).
        let exit_pipe = match slirp {
            Some(_) => Some(
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| Error::io("create a pipe", e.into()))?,
            ),
            None => None,
        };
        let mut cmd = std::process::Command::new(&exe);
        if let Some((_, w)) = &exit_pipe {
            let w = w.as_raw_fd();
            // SAFETY: dup2 is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(w, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .env_clear()
            .env(crate::HELPER_ENV, "network")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // A process group of its own: a Ctrl-C meant for the host does not end the
            // network under instances that a restarted host will re-adopt.
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(format!("start the network holder {}", exe.display()), e))?;
        let hc = HolderConfig {
            net: cfg.clone(),
            control: control.clone(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        };
        let mut line = serde_json::to_string(&hc)
            .map_err(|e| Error::Helper(format!("encode network config: {e}")))?;
        line.push('\n');
        let started = (|| {
            let mut stdin = child.stdin.take().ok_or("no stdin")?;
            stdin
                .write_all(line.as_bytes())
                .map_err(|e| format!("send the configuration: {e}"))?;
            drop(stdin);
            let mut out = String::new();
            let mut stdout = child.stdout.take().ok_or("no stdout")?;
            stdout
                .read_to_string(&mut out)
                .map_err(|e| format!("read the holder's answer: {e}"))?;
            if out.trim() == "ready" {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let err = err.trim();
            Err(if err.is_empty() {
                "the holder exited without a reason; does the host's main() call landscape_runtime::init() first?".to_string()
            } else {
                err.to_string()
            })
        })();
        if let Err(why) = started {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&control);
            return Err(Error::Start {
                instance: format!("network {}", cfg.name),
                message: why,
            });
        }
        let holder_pid = child.id() as i32;
        let netns_inode = netns_inode(holder_pid)
            .map_err(|e| Error::io(format!("inspect the namespace of network {}", cfg.name), e))?;
        let nested = nix::unistd::geteuid().as_raw() != 0;
        let ctl = UnixStream::connect(&control)
            .map_err(|e| Error::io(format!("connect to {}", control.display()), e))?;
        let net = Network {
            cfg,
            holder_pid,
            netns_inode,
            nested,
            control,
            child: Mutex::new(Some(child)),
            ctl: Mutex::new(Some(BufReader::new(ctl))),
            used: Mutex::new(BTreeSet::new()),
            sockets: Mutex::new(Vec::new()),
            seq: std::sync::atomic::AtomicU32::new(0),
            egress: Mutex::new(None),
        };
        if let (Some(slirp), Some((r, w))) = (slirp, exit_pipe) {
            drop(w);
            // On error `net` is dropped: the holder ends, and with it slirp4netns.
            net.start_egress(&slirp, r)?;
        }
        Ok(net)
    }

    /// Starts slirp4netns on the holder's namespace, waits until its tap device exists and
    /// has the holder put it on the bridge.
    fn start_egress(&self, slirp: &Path, exit_r: OwnedFd) -> Result<()> {
        use std::os::unix::process::CommandExt;
        let name = &self.cfg.name;
        let fail = |message: String| Error::Start {
            instance: format!("network {name}"),
            message,
        };
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("create a pipe", e.into()))?;
        let log_path = egress_log(&self.control, name);
        let log = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::File::options()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&log_path)
                .map_err(|e| Error::io(format!("create {}", log_path.display()), e))?
        };
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io(format!("open {}", log_path.display()), e))?;
        let mut cmd = std::process::Command::new(slirp);
        cmd.env_clear()
            .arg(format!("--cidr={}/{}", self.cfg.subnet, self.cfg.prefix))
            .arg(format!("--mtu={}", self.cfg.mtu.unwrap_or(1500)))
            .arg("--exit-fd=3")
            .arg("--ready-fd=4")
            .arg("--enable-seccomp")
            .arg("--netns-type=path");
        if self.nested {
            cmd.arg(format!("--userns-path=/proc/{}/ns/user", self.holder_pid));
        } else {
            cmd.arg("--enable-sandbox");
        }
        cmd.arg(format!("/proc/{}/ns/net", self.holder_pid))
            .arg(TAP)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Like the holder: a Ctrl-C for the host does not end the landscape's egress.
            .process_group(0);
        let (er, rw) = (exit_r.as_raw_fd(), ready_w.as_raw_fd());
        // SAFETY: only dup2 (async-signal-safe) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(er, 3) < 0 || libc::dup2(rw, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("start {}", slirp.display()), e))?;
        drop(exit_r);
        drop(ready_w);
        // Ready: slirp4netns writes "1" once its tap device exists; EOF means it died.
        let ready = {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let mut fds = [PollFd::new(ready_r.as_fd(), PollFlags::POLLIN)];
            let mut byte = [0u8; 1];
            matches!(poll(&mut fds, PollTimeout::from(10_000u16)), Ok(n) if n > 0)
                && matches!(nix::unistd::read(&ready_r, &mut byte), Ok(1))
        };
        let result = if ready {
            self.send(&Control::Egress {
                tap: TAP.to_string(),
                dns: egress_dns_of(&self.cfg),
            })
            .and_then(|mut conn| {
                let mut reply = String::new();
                conn.read_line(&mut reply)
                    .map_err(|e| Error::io(format!("read from network {name}"), e))?;
                self.put_back(conn);
                if reply.trim() == "ok" {
                    Ok(())
                } else {
                    Err(fail(format!("egress: {}", reply.trim())))
                }
            })
        } else {
            let _ = child.kill();
            let _ = child.wait();
            let why = std::fs::read_to_string(&log_path).unwrap_or_default();
            let why = why
                .lines()
                .filter(|l| !l.starts_with("WARNING"))
                .collect::<Vec<_>>()
                .join("; ");
            Err(fail(format!(
                "egress: slirp4netns did not come up: {}",
                if why.is_empty() {
                    "no reason given"
                } else {
                    &why
                }
            )))
        };
        *self.egress.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        result
    }

    /// Its record, for [`Network::adopt`] by a later host.
    pub fn record(&self) -> NetworkRecord {
        NetworkRecord {
            cfg: self.cfg.clone(),
            holder_pid: self.holder_pid,
            netns_inode: self.netns_inode,
            nested: self.nested,
            control: self.control.clone(),
        }
    }

    /// Takes over a network an earlier (killed) host created: its holder still runs and
    /// answers on its control socket. Addresses in use must be [`Network::reserve`]d
    /// again by the caller.
    pub fn adopt(rec: &NetworkRecord) -> Result<Network> {
        let name = &rec.cfg.name;
        if netns_inode(rec.holder_pid).ok() != Some(rec.netns_inode) {
            return Err(Error::Start {
                instance: format!("network {name}"),
                message: format!(
                    "its holder (pid {}) is gone; the landscape must be started afresh",
                    rec.holder_pid
                ),
            });
        }
        let ctl = UnixStream::connect(&rec.control)
            .map_err(|e| Error::io(format!("connect to {}", rec.control.display()), e))?;
        Ok(Network {
            cfg: rec.cfg.clone(),
            holder_pid: rec.holder_pid,
            netns_inode: rec.netns_inode,
            nested: rec.nested,
            control: rec.control.clone(),
            child: Mutex::new(None),
            ctl: Mutex::new(Some(BufReader::new(ctl))),
            used: Mutex::new(BTreeSet::new()),
            sockets: Mutex::new(Vec::new()),
            seq: std::sync::atomic::AtomicU32::new(
                // Bridge-end names stay unique next to the earlier host's.
                (std::process::id() & 0xff) << 12,
            ),
            egress: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// Pid of the holder process (its `/proc/<pid>/ns/net` is the landscape network).
    pub fn holder_pid(&self) -> i32 {
        self.holder_pid
    }

    /// The bridge's address: gateway and DNS server of every instance.
    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(&self.cfg)
    }

    /// How many instances the network has addresses for (the subnet's hosts without the
    /// network and broadcast addresses and the ones the runtime keeps: 251 on a /24).
    pub fn capacity(&self) -> u32 {
        self.cfg.capacity()
    }

    /// Takes the lowest free instance address.
    pub fn allocate(&self) -> Result<Ipv4Addr> {
        let base = u32::from(self.cfg.subnet);
        let size = 1u32 << (32 - self.cfg.prefix);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        // .0 is the network, .1 the bridge, the last the broadcast address.
        for host in FIRST_HOST..size - 1 {
            if used.insert(host) {
                return Ok(Ipv4Addr::from(base + host));
            }
        }
        Err(Error::InvalidSpec(format!(
            "network {}: all {} addresses of {}/{} are in use; stop instances or create the network with a shorter prefix (e.g. /16)",
            self.cfg.name,
            size - 1 - FIRST_HOST,
            self.cfg.subnet,
            self.cfg.prefix
        )))
    }

    /// Marks `addr` as taken (re-adopting an instance that already has it); `false` when
    /// it is outside the subnet or already taken.
    pub fn reserve(&self, addr: Ipv4Addr) -> bool {
        let host = u32::from(addr).wrapping_sub(u32::from(self.cfg.subnet));
        let size = 1u32 << (32 - self.cfg.prefix);
        (FIRST_HOST..size - 1).contains(&host)
            && self
                .used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(host)
    }

    /// Returns `addr` to the free addresses (once its instance has ended).
    pub fn release(&self, addr: Ipv4Addr) {
        let host = u32::from(addr).wrapping_sub(u32::from(self.cfg.subnet));
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&host);
    }

    /// The attachment for an instance at `addr` (from [`Network::allocate`]).
    pub fn attachment(&self, addr: Ipv4Addr) -> Attachment {
        Attachment {
            holder_pid: self.holder_pid,
            netns_inode: self.netns_inode,
            nested: self.nested,
            // Unique per attachment: the bridge end of a stopped instance may still be
            // being removed when its address is handed to the next one.
            veth: format!(
                "v{:08x}{:05x}",
                u32::from(addr),
                self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xfffff
            ),
            address: addr,
            prefix: self.cfg.prefix,
            gateway: self.gateway(),
            default_route: self.cfg.egress.then(|| egress_gateway_of(&self.cfg)),
            domain: self.cfg.name.clone(),
            mtu: self.cfg.mtu,
        }
    }

    fn send(&self, msg: &Control) -> Result<BufReader<UnixStream>> {
        let mut guard = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
        let mut conn = match guard.take() {
            Some(c) => c,
            None => BufReader::new(UnixStream::connect(&self.control).map_err(|e| {
                Error::io(
                    format!(
                        "connect to network {} ({})",
                        self.cfg.name,
                        self.control.display()
                    ),
                    e,
                )
            })?),
        };
        let mut line = serde_json::to_string(msg)
            .map_err(|e| Error::Helper(format!("encode network request: {e}")))?;
        line.push('\n');
        conn.get_mut()
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(format!("talk to network {}", self.cfg.name), e))?;
        Ok(conn)
    }

    fn put_back(&self, conn: BufReader<UnixStream>) {
        *self.ctl.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
    }

    /// Replaces the landscape's DNS names: each name (a service, `service-N`, a replica's
    /// hostname; lower case) resolves to its addresses, in rotating order. Names not in the
    /// table get NXDOMAIN; an empty list removes a name.
    pub fn set_names(&self, names: &BTreeMap<String, Vec<Ipv4Addr>>) -> Result<()> {
        let mut conn = self.send(&Control::Names(names.clone()))?;
        let mut reply = String::new();
        conn.read_line(&mut reply)
            .map_err(|e| Error::io(format!("read from network {}", self.cfg.name), e))?;
        self.put_back(conn);
        if reply.trim() == "ok" {
            Ok(())
        } else {
            Err(Error::Helper(format!(
                "network {}: names not taken: {}",
                self.cfg.name,
                reply.trim()
            )))
        }
    }

    /// An unconnected, non-blocking TCP socket (IPv4) that lives in the landscape network:
    /// `connect` it to an instance address from anywhere in the host.
    pub fn tcp_socket(&self) -> Result<OwnedFd> {
        if let Some(fd) = self.sockets.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(fd);
        }
        let conn = self.send(&Control::Sockets(sys::MAX_FDS))?;
        let got = sys::recv_many_fds(conn.get_ref());
        self.put_back(conn);
        let mut fds =
            got.map_err(|e| Error::io(format!("receive sockets of network {}", self.cfg.name), e))?;
        let first = fds.pop().ok_or_else(|| {
            Error::Helper(format!(
                "network {}: the holder sent no sockets (it may have exited)",
                self.cfg.name
            ))
        })?;
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(fds);
        Ok(first)
    }

    /// Connects to `addr` inside the landscape network (a blocking stream, for probes and
    /// tools; the router uses [`Network::tcp_socket`] with its own event loop).
    pub fn connect(
        &self,
        addr: std::net::SocketAddrV4,
        timeout: std::time::Duration,
    ) -> std::io::Result<std::net::TcpStream> {
        use nix::poll::{poll, PollFd, PollFlags};
        use std::os::fd::AsFd;
        let fd = self.tcp_socket().map_err(std::io::Error::other)?;
        let sa = nix::sys::socket::SockaddrIn::from(addr);
        match nix::sys::socket::connect(fd.as_raw_fd(), &sa) {
            Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
        let n = poll(&mut fds, crate::sys::poll_timeout(timeout))?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out"),
            ));
        }
        let err = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SocketError)?;
        if err != 0 {
            return Err(std::io::Error::from_raw_os_error(err));
        }
        let stream = std::net::TcpStream::from(fd);
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Interfaces in the landscape network (its `/proc/<holder>/net/dev`): the bridge, `lo`
    /// and the bridge end of every attached instance.
    pub fn interfaces(&self) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(format!("/proc/{}/net/dev", self.holder_pid))
            .map_err(|e| Error::io(format!("list interfaces of network {}", self.cfg.name), e))?;
        Ok(text
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_string())
            .collect())
    }

    /// Ends the holder and waits for it. Idempotent.
    pub fn shutdown(&self) {
        if let Ok(conn) = self.send(&Control::Shutdown) {
            drop(conn);
        }
        *self.ctl.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            // The holder exits on the request; a holder that does not is killed.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(2))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        } else if netns_inode(self.holder_pid).ok() == Some(self.netns_inode) {
            // An adopted holder is not our child: wait for it to go, then make sure.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while netns_inode(self.holder_pid).ok() == Some(self.netns_inode)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            if netns_inode(self.holder_pid).ok() == Some(self.netns_inode) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.holder_pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Some(mut slirp) = self.egress.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // slirp4netns exits once the holder has gone (its exit fd closes).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while matches!(slirp.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            let _ = slirp.kill();
            let _ = slirp.wait();
        }
        let _ = std::fs::remove_file(&self.control);
        // slirp4netns's output (kept for the reason of a failed start only).
        let _ = std::fs::remove_file(egress_log(&self.control, &self.cfg.name));
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Creates `dir` as 0700 (or narrows it to 0700 when it exists and is ours).
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let meta = std::fs::metadata(dir)
        .map_err(|e| Error::io(format!("create directory {}", dir.display()), e))?;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(Error::InvalidSpec(format!(
            "directory {} belongs to another user; remove it or choose another state directory",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("chmod 0700 {}", dir.display()), e))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The holder process.

/// Entry of the holder (a re-executed host binary); never returns.
pub(crate) fn holder_main() -> ! {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        std::process::exit(2);
    }
    let cfg: HolderConfig = match serde_json::from_str(&line) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bad network configuration: {e}");
            std::process::exit(2);
        }
    };
    let (dns, listener) = match holder_setup(&cfg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("network {}: {e}", cfg.net.name);
            std::process::exit(1);
        }
    };
    // Ready: detach from the host (stdio on /dev/null; the host started it in a process
    // group of its own) so that the network outlives a host that is killed.
    println!("ready");
    let _ = std::io::stdout().flush();
    if let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    holder_loop(&cfg, dns, listener);
    let _ = std::fs::remove_file(&cfg.control);
    std::process::exit(0)
}

fn holder_setup(
    cfg: &HolderConfig,
) -> std::result::Result<(std::net::UdpSocket, std::os::unix::net::UnixListener), String> {
    use nix::sched::{unshare, CloneFlags};
    if cfg.uid != 0 {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|e| {
            format!("create the network's user and network namespaces: {e}; check that unprivileged user namespaces are enabled")
        })?;
        std::fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("setgroups: {e}"))?;
        std::fs::write("/proc/self/uid_map", format!("0 {} 1\n", cfg.uid))
            .map_err(|e| format!("write uid_map: {e}"))?;
        std::fs::write("/proc/self/gid_map", format!("0 {} 1\n", cfg.gid))
            .map_err(|e| format!("write gid_map: {e}"))?;
    } else {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("create the network namespace: {e}"))?;
    }
    sys::loopback_up().map_err(|e| format!("bring up loopback: {e}"))?;
    let mut nl = crate::netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let gw = gateway_of(&cfg.net);
    // A locally administered MAC derived from the gateway address.
    let o = gw.octets();
    nl.add_bridge(BRIDGE, [0x02, 0x4c, o[0], o[1], o[2], o[3]])
        .map_err(|e| e.to_string())?;
    let idx = nl.index(BRIDGE).map_err(|e| e.to_string())?;
    nl.add_address(idx, gw, cfg.net.prefix)
        .map_err(|e| e.to_string())?;
    let dns = std::net::UdpSocket::bind((gw, 53))
        .map_err(|e| format!("bind the DNS server to {gw}:53: {e}"))?;
    let _ = std::fs::remove_file(&cfg.control);
    let listener = std::os::unix::net::UnixListener::bind(&cfg.control)
        .map_err(|e| format!("bind the control socket {}: {e}", cfg.control.display()))?;
    dns.set_nonblocking(true).map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok((dns, listener))
}

struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

fn holder_loop(
    cfg: &HolderConfig,
    dns: std::net::UdpSocket,
    listener: std::os::unix::net::UnixListener,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut table = crate::dns::Table::new(Some(&cfg.net.name));
    let mut rotate: usize = 0;
    let mut conns: Vec<Conn> = Vec::new();
    let mut packet = [0u8; 1500];
    // Egress: foreign names go to slirp4netns's DNS through this socket.
    let mut upstream: Option<Forwarder> = None;
    loop {
        let mut fds = vec![
            PollFd::new(dns.as_fd(), PollFlags::POLLIN),
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(f) = &upstream {
            fds.push(PollFd::new(f.sock.as_fd(), PollFlags::POLLIN));
        }
        let first_conn = fds.len();
        for c in &conns {
            fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if upstream.is_some() && ready[2] {
            if let Some(f) = &mut upstream {
                f.relay(&dns);
            }
        }
        if ready[0] {
            while let Ok((n, from)) = dns.recv_from(&mut packet) {
                let query = &packet[..n];
                if let Some(f) = &mut upstream {
                    if crate::dns::forwardable(query, &table) {
                        f.forward(query, from);
                        continue;
                    }
                }
                if is_a_query(query) {
                    rotate = rotate.wrapping_add(1);
                }
                if let Some(resp) = crate::dns::answer(query, &table, rotate) {
                    let _ = dns.send_to(&resp, from);
                }
            }
        }
        if ready[1] {
            while let Ok((s, _)) = listener.accept() {
                if s.set_nonblocking(true).is_ok() {
                    conns.push(Conn {
                        stream: s,
                        buf: Vec::new(),
                    });
                }
            }
        }
        let mut closed = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            if !ready.get(i + first_conn).copied().unwrap_or(false) {
                continue;
            }
            let mut chunk = [0u8; 4096];
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed.push(i);
                        break;
                    }
                    Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed.push(i);
                        break;
                    }
                }
            }
            while let Some(nl) = c.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = c.buf.drain(..=nl).collect();
                let _ = c.stream.set_nonblocking(false);
                match serde_json::from_slice::<Control>(&line) {
                    Ok(Control::Names(names)) => {
                        let mut t = crate::dns::Table::new(Some(&cfg.net.name));
                        for (name, addrs) in names {
                            t.set(&name, addrs);
                        }
                        table = t;
                        let _ = c.stream.write_all(b"ok\n");
                    }
                    Ok(Control::Sockets(n)) => {
                        let mut made = Vec::new();
                        for _ in 0..n.clamp(1, sys::MAX_FDS) {
                            if let Ok(fd) = nix::sys::socket::socket(
                                nix::sys::socket::AddressFamily::Inet,
                                nix::sys::socket::SockType::Stream,
                                nix::sys::socket::SockFlag::SOCK_NONBLOCK
                                    | nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                                None,
                            ) {
                                made.push(fd);
                            }
                        }
                        let raw: Vec<_> = made.iter().map(|f| f.as_raw_fd()).collect();
                        let _ = sys::send_fds(&c.stream, &raw);
                    }
                    Ok(Control::Egress { tap, dns: server }) => {
                        let reply = egress_up(&tap, server).map(|f| upstream = Some(f));
                        let line = match reply {
                            Ok(()) => "ok\n".to_string(),
                            Err(e) => format!("{e}\n"),
                        };
                        let _ = c.stream.write_all(line.as_bytes());
                    }
                    Ok(Control::Shutdown) => return,
                    Err(e) => {
                        let _ = c.stream.write_all(format!("bad request: {e}\n").as_bytes());
                    }
                }
                let _ = c.stream.set_nonblocking(true);
            }
        }
        for i in closed.into_iter().rev() {
            conns.remove(i);
        }
    }
}

/// Puts slirp4netns's tap device on the bridge and opens the socket to its DNS.
fn egress_up(tap: &str, server: Ipv4Addr) -> std::result::Result<Forwarder, String> {
    let mut nl = crate::netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let bridge = nl.index(BRIDGE).map_err(|e| e.to_string())?;
    let idx = nl.index(tap).map_err(|e| e.to_string())?;
    nl.set_master_up(idx, bridge).map_err(|e| e.to_string())?;
    // Only frames for slirp4netns's own addresses (the gateway, the address before
    // `server`, and the DNS server) go to it. A frame for an instance that has gone (a
    // replica between two starts, whose MAC the bridge has forgotten) would otherwise be
    // flooded to slirp4netns too, which forwards it to the host's network: a probe or a
    // client of that replica then reaches whatever has its address outside. slirp4netns
    // answers as 52:55 followed by the IPv4 address; static entries keep its ports known
    // when egress has been idle longer than the bridge's ageing time.
    for ip in [Ipv4Addr::from(u32::from(server) - 1), server] {
        let o = ip.octets();
        nl.add_static_fdb(idx, [0x52, 0x55, o[0], o[1], o[2], o[3]])
            .map_err(|e| e.to_string())?;
    }
    nl.set_port_unicast_flood(idx, false)
        .map_err(|e| e.to_string())?;
    let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .map_err(|e| format!("DNS forwarding socket: {e}"))?;
    sock.connect((server, 53))
        .map_err(|e| format!("DNS forwarding to {server}: {e}"))?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(Forwarder {
        sock,
        next_id: 1,
        pending: std::collections::HashMap::new(),
    })
}

/// Forwards the queries the landscape's DNS does not own to the upstream resolver and the
/// answers back, matching them by a DNS ID of its own.
struct Forwarder {
    sock: std::net::UdpSocket,
    next_id: u16,
    /// Our ID -> (client, client's ID, when sent).
    pending: std::collections::HashMap<u16, (std::net::SocketAddr, [u8; 2], std::time::Instant)>,
}

impl Forwarder {
    /// Queries older than this are forgotten (the client has retried or given up).
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

    fn forward(&mut self, query: &[u8], from: std::net::SocketAddr) {
        let now = std::time::Instant::now();
        if self.pending.len() >= 4096 {
            self.pending
                .retain(|_, (_, _, at)| now.duration_since(*at) < Self::TIMEOUT);
        }
        if self.pending.len() >= 4096 {
            return;
        }
        let id = loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let mut q = query.to_vec();
        let orig = [q[0], q[1]];
        q[..2].copy_from_slice(&id.to_be_bytes());
        if self.sock.send(&q).is_ok() {
            self.pending.insert(id, (from, orig, now));
        }
    }

    fn relay(&mut self, dns: &std::net::UdpSocket) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            if n < 12 {
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            if let Some((client, orig, _)) = self.pending.remove(&id) {
                buf[..2].copy_from_slice(&orig);
                let _ = dns.send_to(&buf[..n], client);
            }
        }
    }
}

/// Whether a DNS query asks for an A record (the rotation advances only for those: glibc
/// sends A and AAAA queries in pairs, which would otherwise always give A the same turn).
fn is_a_query(q: &[u8]) -> bool {
    let mut i = 12;
    while let Some(&len) = q.get(i) {
        if len == 0 {
            return q.get(i + 1..i + 3) == Some(&[0, 1]);
        }
        if len & 0xc0 != 0 {
            return false;
        }
        i += 1 + len as usize;
    }
    false
}
