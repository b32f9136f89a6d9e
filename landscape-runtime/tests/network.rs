//! The landscape network with real instances: addresses per replica, names through the
//! landscape's DNS, sockets for the host, isolation, teardown; and the start
//! synchronisation (spawn returns only once the command runs inside the instance).
//! Runs as root and as an unprivileged user (scripts/test.d/runtime.sh).

mod common;

use common::{poll, TempDir};
use landscape_runtime::{
    Instance, InstanceSpec, LogConfig, Network, NetworkConfig, Output, Process, Runtime,
};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn main() {
    common::run(&[
        (
            "spawn_returns_only_once_the_command_runs_inside_its_root",
            spawn_returns_only_once_the_command_runs_inside_its_root,
        ),
        (
            "replicas_bind_one_port_each_at_its_own_address",
            replicas_bind_one_port_each_at_its_own_address,
        ),
        (
            "services_reach_each_other_by_name_and_leave_the_answers",
            services_reach_each_other_by_name_and_leave_the_answers,
        ),
        (
            "instances_see_only_their_own_landscape",
            instances_see_only_their_own_landscape,
        ),
        (
            "start_stop_cycles_and_drop_leave_nothing",
            start_stop_cycles_and_drop_leave_nothing,
        ),
        ("bad_network_input_is_refused", bad_network_input_is_refused),
        (
            "egress_reaches_the_hosts_loopback_only_when_on",
            egress_reaches_the_hosts_loopback_only_when_on,
        ),
        (
            "egress_without_slirp4netns_is_a_clear_error",
            egress_without_slirp4netns_is_a_clear_error,
        ),
    ]);
}

fn net_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn network(rt: &Runtime, tag: &str, subnet: Ipv4Addr) -> Network {
    let mut cfg = NetworkConfig::new(net_name(tag));
    cfg.subnet = subnet;
    Network::create(rt, cfg).expect("create network")
}

/// A replica serving its own name on port 3000 (busybox httpd from the host base).
fn web_replica(rt: &Runtime, net: &Network, name: &str) -> (Instance, Ipv4Addr) {
    let addr = net.allocate().unwrap();
    let mut spec = InstanceSpec::new(
        "api",
        Process::shell(format!(
            "mkdir -p /tmp/www && echo {name} > /tmp/www/index.html && exec busybox httpd -f -p 3000 -h /tmp/www"
        )),
    );
    spec.hostname = Some(name.into());
    spec.network = Some(net.attachment(addr));
    let inst = rt.spawn(&spec, Output::Null).expect("spawn replica");
    (inst, addr)
}

/// GET / from the host through the network's sockets.
fn get(net: &Network, addr: Ipv4Addr, port: u16) -> std::io::Result<String> {
    let mut s = net.connect(SocketAddrV4::new(addr, port), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default())
}

fn wait_serving(net: &Network, addr: Ipv4Addr, body: &str) {
    let got = poll(Duration::from_secs(10), || {
        get(net, addr, 3000).ok().filter(|b| b == body)
    });
    assert_eq!(
        got.as_deref(),
        Some(body),
        "{addr}:3000 did not serve {body}"
    );
}

/// Runs `script` in an instance attached to `net`; returns (exit code, stdout).
fn run_in(rt: &Runtime, net: &Network, script: &str) -> (i32, String) {
    let addr = net.allocate().unwrap();
    let mut spec = InstanceSpec::new("client", Process::shell(script));
    spec.network = Some(net.attachment(addr));
    let logs = TempDir::new("netlogs");
    let mut inst = rt
        .spawn(&spec, Output::Logs(LogConfig::new(logs.path())))
        .expect("spawn client");
    let exit = inst.wait().expect("wait client");
    net.release(addr);
    let text = std::fs::read_to_string(inst.log_path().unwrap()).unwrap_or_default();
    let out = text
        .lines()
        .filter_map(landscape_runtime::logs::parse_line)
        .map(|l| l.text)
        .collect::<Vec<_>>()
        .join("\n");
    (exit.status_code(), out)
}

fn spawn_returns_only_once_the_command_runs_inside_its_root() {
    // Before the fix, `spawn` returned as soon as the namespaces existed: the instance had
    // not mounted or pivoted yet, so `/proc/<pid>/root` was still the host's `/` and a host
    // writing there (e.g. an /etc/hosts update) changed the host's own files.
    let rt = common::runtime();
    for i in 0..30 {
        let name = format!("inside-{i}");
        let mut spec = InstanceSpec::new("sync", Process::shell("sleep 30"));
        spec.hostname = Some(name.clone());
        let mut inst = rt.spawn(&spec, Output::Null).expect("spawn");
        let seen = std::fs::read_to_string(format!("/proc/{}/root/etc/hostname", inst.pid()))
            .expect("read the instance's /etc/hostname");
        assert_eq!(
            seen.trim(),
            name,
            "round {i}: spawn returned before the instance was inside its own root"
        );
        inst.kill().unwrap();
        inst.wait().unwrap();
    }
}

fn replicas_bind_one_port_each_at_its_own_address() {
    let rt = common::runtime();
    let net = network(&rt, "rep", Ipv4Addr::new(10, 88, 0, 0));
    let (mut r0, a0) = web_replica(&rt, &net, "api-0");
    let (mut r1, a1) = web_replica(&rt, &net, "api-1");
    assert_ne!(a0, a1);
    wait_serving(&net, a0, "api-0");
    wait_serving(&net, a1, "api-1");
    // Both still run (neither lost the port to the other).
    assert!(r0.try_wait().unwrap().is_none());
    assert!(r1.try_wait().unwrap().is_none());
    r0.stop(Duration::from_secs(2)).unwrap();
    r1.stop(Duration::from_secs(2)).unwrap();
}

fn services_reach_each_other_by_name_and_leave_the_answers() {
    let rt = common::runtime();
    let net = network(&rt, "dns", Ipv4Addr::new(10, 88, 0, 0));
    let (mut r0, a0) = web_replica(&rt, &net, "api-0");
    let (mut r1, a1) = web_replica(&rt, &net, "api-1");
    wait_serving(&net, a0, "api-0");
    wait_serving(&net, a1, "api-1");
    let mut names = BTreeMap::new();
    names.insert("api".to_string(), vec![a0, a1]);
    names.insert("api-0".to_string(), vec![a0]);
    names.insert("api-1".to_string(), vec![a1]);
    net.set_names(&names).unwrap();
    let (code, out) = run_in(
        &rt,
        &net,
        "for i in 1 2 3 4 5 6; do curl -s --max-time 5 http://api:3000/; done",
    );
    assert_eq!(code, 0, "curl by service name failed: {out}");
    assert!(
        out.contains("api-0") && out.contains("api-1"),
        "both replicas answer over a few requests: {out:?}"
    );
    let domain = net.config().name.clone();
    let (code, out) = run_in(
        &rt,
        &net,
        &format!("curl -s --max-time 5 http://api-1.{domain}:3000/ && getent hosts api-0"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("api-1") && out.contains(&a0.to_string()),
        "{out:?}"
    );
    let (code, out) = run_in(&rt, &net, "getent hosts no-such-service");
    assert_ne!(code, 0, "an unknown name must not resolve: {out}");
    // api-1 turns unhealthy: it leaves the answers while its process still runs.
    names.insert("api".to_string(), vec![a0]);
    names.remove("api-1");
    net.set_names(&names).unwrap();
    assert!(r1.try_wait().unwrap().is_none());
    let (code, out) = run_in(
        &rt,
        &net,
        "for i in 1 2 3 4; do curl -s --max-time 5 http://api:3000/; done; getent hosts api-1 || echo gone",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("api-0"), "{out:?}");
    assert!(
        !out.contains("api-1"),
        "a removed replica still answered: {out:?}"
    );
    assert!(out.contains("gone"), "{out:?}");
    r0.stop(Duration::from_secs(2)).unwrap();
    r1.stop(Duration::from_secs(2)).unwrap();
}

fn instances_see_only_their_own_landscape() {
    let rt = common::runtime();
    let a = network(&rt, "iso-a", Ipv4Addr::new(10, 88, 0, 0));
    let b = network(&rt, "iso-b", Ipv4Addr::new(10, 89, 0, 0));
    let (mut r0, a0) = web_replica(&rt, &a, "api-0");
    wait_serving(&a, a0, "api-0");
    // Inside: loopback and the instance's own eth0, nothing of the host.
    let (code, out) = run_in(
        &rt,
        &a,
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "eth0 lo", "interfaces inside an instance");
    // Reachable from its own landscape ...
    let (code, out) = run_in(&rt, &a, &format!("curl -s --max-time 5 http://{a0}:3000/"));
    assert_eq!((code, out.trim()), (0, "api-0"));
    // ... but not from another landscape's instance, nor through the other's sockets.
    let (code, out) = run_in(
        &rt,
        &b,
        &format!("curl -s --connect-timeout 1 --max-time 2 http://{a0}:3000/"),
    );
    assert_ne!(code, 0, "another landscape reached {a0}: {out}");
    assert!(get(&b, a0, 3000).is_err());
    r0.stop(Duration::from_secs(2)).unwrap();
}

fn own_children() -> Vec<i32> {
    common::children_of(std::process::id() as i32)
        .into_iter()
        .filter(|p| Some(*p) != landscape_runtime::fork_server_pid())
        .collect()
}

fn start_stop_cycles_and_drop_leave_nothing() {
    let rt = common::runtime();
    let net = network(&rt, "cyc", Ipv4Addr::new(10, 88, 0, 0));
    let holder = net.holder_pid();
    let mut base = net.interfaces().unwrap();
    base.sort();
    assert_eq!(base, vec!["lo".to_string(), "lsbr0".to_string()]);
    for i in 0..200 {
        let addr = net.allocate().unwrap();
        let mut spec = InstanceSpec::new("cycle", Process::argv(["/bin/true"]));
        spec.network = Some(net.attachment(addr));
        let mut inst = rt.spawn(&spec, Output::Null).expect("spawn");
        let exit = inst.wait().unwrap();
        assert!(exit.success(), "cycle {i}: {exit:?}");
        net.release(addr);
    }
    // The helper removes the bridge end just after it has reported the exit.
    let left = poll(Duration::from_secs(10), || {
        let mut left = net.interfaces().unwrap();
        left.sort();
        (left == base).then_some(())
    });
    assert!(
        left.is_some(),
        "veths left in the landscape network: {:?}",
        net.interfaces().unwrap()
    );
    let control = rt
        .state_dir()
        .join("net")
        .join(format!("{}.sock", net.config().name));
    assert!(control.exists());
    drop(net);
    assert!(
        !std::path::Path::new(&format!("/proc/{holder}")).exists(),
        "the holder outlived its network"
    );
    assert!(!control.exists(), "control socket left behind");
    assert_eq!(own_children(), Vec::<i32>::new(), "processes left behind");
}

fn bad_network_input_is_refused() {
    let rt = common::runtime();
    let mut cfg = NetworkConfig::new("Bad_Name");
    let e = Network::create(&rt, cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("Bad_Name") && e.contains("DNS label"), "{e}");
    cfg.name = net_name("bad");
    cfg.prefix = 30;
    let e = Network::create(&rt, cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("/30"), "{e}");
    cfg.prefix = 24;
    cfg.subnet = Ipv4Addr::new(10, 88, 0, 7);
    let e = Network::create(&rt, cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("host bits") && e.contains("10.88.0.0/24"), "{e}");
    // A /29 has three instance addresses (.4 to .6: .1 is the bridge, .2 and .3 egress);
    // the fourth is a clear error.
    cfg.subnet = Ipv4Addr::new(10, 88, 0, 0);
    cfg.prefix = 29;
    let net = Network::create(&rt, cfg.clone()).unwrap();
    let got: Vec<Ipv4Addr> = (0..3).map(|_| net.allocate().unwrap()).collect();
    assert_eq!(
        got,
        [4, 5, 6].map(|h| Ipv4Addr::new(10, 88, 0, h)).to_vec(),
        "instance addresses"
    );
    let e = net.allocate().unwrap_err().to_string();
    assert!(e.contains("in use") && e.contains(&cfg.name), "{e}");
    // The same name twice is refused while the first runs.
    let e = Network::create(&rt, cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("already running"), "{e}");
    drop(net);
    Network::create(&rt, cfg).expect("the name is free again after drop");
}

/// An HTTP server on the host's 127.0.0.1 answering `body` to every request, for at most
/// `max` connections or until dropped.
struct HostServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl HostServer {
    fn start(body: &'static str, max: usize) -> HostServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut served = 0;
            while served < max && !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let _ = write!(
                            s,
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        served += 1;
                    }
                    Err(_) => std::thread::park_timeout(Duration::from_millis(5)),
                }
            }
            served
        });
        HostServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the server; the number of connections it served.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn egress_reaches_the_hosts_loopback_only_when_on() {
    let rt = common::runtime();
    let server = HostServer::start("egress-ok", 8);
    let fetch = format!(
        "curl -sS --max-time 4 http://10.88.0.2:{}/ 2>&1; echo \" exit=$?\"; ip route",
        server.port
    );
    let mut cfg = NetworkConfig::new(net_name("egr"));
    cfg.egress = true;
    let on = Network::create(&rt, cfg).expect("create a network with egress");
    let ifaces = on.interfaces().unwrap();
    assert!(
        ifaces.iter().any(|i| i == "lstap0"),
        "no tap device in the network: {ifaces:?}"
    );
    // The landscape's own names still answer with egress on (they are never forwarded).
    let (_web, addr) = web_replica(&rt, &on, "web-1");
    wait_serving(&on, addr, "web-1");
    let mut names = BTreeMap::new();
    names.insert("web".to_string(), vec![addr]);
    on.set_names(&names).unwrap();
    let (code, out) = run_in(
        &rt,
        &on,
        &format!("{fetch}; curl -sS --max-time 4 http://web:3000/"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("egress-ok exit=0"), "egress on: {out}");
    assert!(out.contains("default via 10.88.0.2"), "egress on: {out}");
    assert!(
        out.trim_end().ends_with("web-1"),
        "by name with egress on: {out}"
    );
    // A replica that has gone (its veth removed; the bridge still knows its MAC from the
    // neighbour cache) and an address no instance has are not reached through egress:
    // frames for them must not be flooded to slirp4netns, which would connect to that
    // address on the host's network.
    drop(_web);
    poll(Duration::from_secs(10), || {
        (on.interfaces().unwrap().len() == ifaces.len()).then_some(())
    })
    .expect("the replica's veth is removed");
    for gone in [addr, Ipv4Addr::new(10, 88, 0, 200)] {
        let r = on.connect(
            std::net::SocketAddrV4::new(gone, 3000),
            Duration::from_secs(1),
        );
        assert!(
            r.is_err(),
            "{gone}:3000 answered with no instance there: {r:?}"
        );
    }
    // slirp4netns's output file lives beside the control socket until the network goes.
    let control = on.record().control;
    let egress_log = control.with_file_name(format!("{}.egress.log", on.config().name));
    assert!(egress_log.exists(), "{}", egress_log.display());
    drop(on);
    assert!(
        !control.exists() && !egress_log.exists(),
        "left behind: {} {}",
        control.display(),
        egress_log.display()
    );

    let off = network(&rt, "noegr", Ipv4Addr::new(10, 88, 0, 0));
    assert!(!off.interfaces().unwrap().iter().any(|i| i == "lstap0"));
    let (_, out) = run_in(&rt, &off, &fetch);
    assert!(!out.contains("egress-ok"), "egress off: {out}");
    assert!(!out.contains("exit=0"), "egress off: {out}");
    assert!(
        !out.contains("default"),
        "egress off has no default route: {out}"
    );
    drop(off);
    assert_eq!(
        server.finish(),
        1,
        "the host server saw only the egress-on request"
    );
    assert_eq!(
        own_children(),
        Vec::<i32>::new(),
        "slirp4netns or a holder left behind"
    );
}

fn egress_without_slirp4netns_is_a_clear_error() {
    let rt = common::runtime();
    let empty = TempDir::new("nopath");
    let saved = std::env::var_os("PATH");
    // The harness runs tests one at a time: nothing else reads PATH meanwhile.
    std::env::set_var("PATH", empty.path());
    let mut cfg = NetworkConfig::new(net_name("noslirp"));
    cfg.egress = true;
    let r = Network::create(&rt, cfg.clone());
    match &saved {
        Some(p) => std::env::set_var("PATH", p),
        None => std::env::remove_var("PATH"),
    }
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains(&cfg.name)
            && e.contains("slirp4netns is not installed")
            && e.contains("egress off"),
        "{e}"
    );
    // Nothing started: the name is free.
    cfg.egress = false;
    Network::create(&rt, cfg).expect("the name was not taken by the failed create");
}
