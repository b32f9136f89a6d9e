//! A minimal rtnetlink client for the landscape network: bridges, veth pairs, addresses and
//! routes, built as raw messages on a `NETLINK_ROUTE` socket (no `ip` commands on the start
//! path, no async runtime: it runs in the single-threaded helper and in the instance before
//! its command starts). Every request asks for an acknowledgement, so errors come back as
//! the kernel's errno, named with the operation.

use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_NEWNEIGH: u16 = 28;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BRPORT_UNICAST_FLOOD: u16 = 9;
const NDA_LLADDR: u16 = 2;
const NUD_NOARP: u16 = 0x40;
const NTF_MASTER: u8 = 0x04;
const AF_BRIDGE: u8 = 7;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const IFF_UP: u32 = 1;
const AF_INET: u8 = libc::AF_INET as u8;

/// An open `NETLINK_ROUTE` socket in the calling thread's network namespace (the namespace
/// is fixed when the socket is created).
pub(crate) struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// A message under construction: header, fixed part, attributes (nested ones by offset).
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, filled in at the end
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        Msg { buf }
    }

    fn align(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// `struct ifinfomsg`.
    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) {
        self.buf.push(0); // AF_UNSPEC
        self.buf.push(0);
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // type
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        self.align();
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.align();
    }

    fn attr_str(&mut self, kind: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    /// Opens a nested attribute; close it with [`Msg::end`].
    fn begin(&mut self, kind: u16) -> usize {
        self.align();
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self.align();
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        self.align();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn ifname_ok(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?}: 1-15 characters, no '/' or spaces"),
        ));
    }
    Ok(())
}

impl Netlink {
    /// Opens a socket in the current network namespace.
    pub(crate) fn open() -> io::Result<Netlink> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement; with `want_reply`, returns the
    /// first reply message (for `GET` requests) instead.
    fn call(&mut self, msg: Msg, what: &str, want_reply: bool) -> io::Result<Vec<u8>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        send(self.fd.as_raw_fd(), &bytes, MsgFlags::empty())
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}")))?;
        let mut buf = vec![0u8; 32 * 1024];
        let mut reply = None;
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}")))?;
            let mut off = 0;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let mseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap_or([0; 4]));
                if len < 16 || off + len > n {
                    return Err(io::Error::other(format!("{what}: short netlink reply")));
                }
                if mseq == seq {
                    if kind == NLMSG_ERROR {
                        let code = i32::from_ne_bytes(
                            buf[off + 16..off + 20].try_into().unwrap_or([0; 4]),
                        );
                        if code == 0 {
                            return Ok(reply.unwrap_or_default());
                        }
                        let e = io::Error::from_raw_os_error(-code);
                        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
                    }
                    if want_reply && reply.is_none() {
                        reply = Some(buf[off..off + len].to_vec());
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Creates a bridge named `name` with a fixed MAC address (a bridge otherwise takes the
    /// lowest MAC of its ports, which changes as instances come and go and would stale the
    /// instances' ARP caches), and brings it up.
    pub(crate) fn add_bridge(&mut self, name: &str, mac: [u8; 6]) -> io::Result<()> {
        ifname_ok(name)?;
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, name);
        m.attr(IFLA_ADDRESS, &mac);
        let li = m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "bridge");
        m.end(li);
        self.call(m, &format!("create bridge {name}"), false)
            .map(drop)
    }

    /// Creates a veth pair: `name` here, attached to `master` and up; its peer `peer_name`
    /// (with MAC `peer_mac`) created directly in the network namespace of process
    /// `peer_pid` (down).
    pub(crate) fn add_veth(
        &mut self,
        name: &str,
        master: u32,
        peer_name: &str,
        peer_mac: [u8; 6],
        peer_pid: i32,
        mtu: Option<u32>,
    ) -> io::Result<()> {
        ifname_ok(name)?;
        ifname_ok(peer_name)?;
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, name);
        m.attr(IFLA_MASTER, &master.to_ne_bytes());
        if let Some(mtu) = mtu {
            m.attr(IFLA_MTU, &mtu.to_ne_bytes());
        }
        let li = m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        let data = m.begin(IFLA_INFO_DATA);
        let peer = m.begin(VETH_INFO_PEER);
        // Not up yet: the kernel configures the peer before the pair is linked, and opening
        // it then fails with ENOTCONN; the instance sets its end up.
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, peer_name);
        m.attr(IFLA_ADDRESS, &peer_mac);
        m.attr(IFLA_NET_NS_PID, &(peer_pid as u32).to_ne_bytes());
        if let Some(mtu) = mtu {
            m.attr(IFLA_MTU, &mtu.to_ne_bytes());
        }
        m.end(peer);
        m.end(data);
        m.end(li);
        self.call(m, &format!("create veth {name}"), false)
            .map(drop)
    }

    /// Index of interface `name`.
    pub(crate) fn index(&mut self, name: &str) -> io::Result<u32> {
        ifname_ok(name)?;
        let mut m = Msg::new(RTM_GETLINK, 0);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        let reply = self.call(m, &format!("find interface {name}"), true)?;
        // nlmsghdr (16) + ifinfomsg: family, pad, type (4), index at 20..24.
        reply
            .get(20..24)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| io::Error::other(format!("find interface {name}: short reply")))
    }

    /// Sets interface `index` up.
    pub(crate) fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(index as i32, IFF_UP, IFF_UP);
        self.call(m, &format!("set interface {index} up"), false)
            .map(drop)
    }

    /// Puts interface `index` on bridge `master` and sets it up.
    pub(crate) fn set_master_up(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(index as i32, IFF_UP, IFF_UP);
        m.attr(IFLA_MASTER, &master.to_ne_bytes());
        self.call(m, &format!("attach interface {index} to the bridge"), false)
            .map(drop)
    }

    /// Whether the bridge sends frames for destinations it has not learned (unknown
    /// unicast) to bridge port `index` as well (`bridge link set dev X flood on|off`).
    pub(crate) fn set_port_unicast_flood(&mut self, index: u32, on: bool) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(index as i32, 0, 0);
        let li = m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_SLAVE_KIND, "bridge");
        let data = m.begin(IFLA_INFO_SLAVE_DATA);
        m.attr(IFLA_BRPORT_UNICAST_FLOOD, &[u8::from(on)]);
        m.end(data);
        m.end(li);
        self.call(m, &format!("set flooding of bridge port {index}"), false)
            .map(drop)
    }

    /// A static entry of the bridge's forwarding database: frames for `mac` go to bridge
    /// port `index`, learned or not (`bridge fdb replace MAC dev X master static`).
    pub(crate) fn add_static_fdb(&mut self, index: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
        // struct ndmsg: family, 3 bytes padding, ifindex, state, flags, type.
        m.buf.extend_from_slice(&[AF_BRIDGE, 0, 0, 0]);
        m.buf.extend_from_slice(&(index as i32).to_ne_bytes());
        m.buf.extend_from_slice(&NUD_NOARP.to_ne_bytes());
        m.buf.push(NTF_MASTER);
        m.buf.push(0);
        m.attr(NDA_LLADDR, &mac);
        self.call(
            m,
            &format!("add a forwarding entry on bridge port {index}"),
            false,
        )
        .map(drop)
    }

    /// Deletes interface `name` (`Ok(false)` when there is none).
    pub(crate) fn delete(&mut self, name: &str) -> io::Result<bool> {
        ifname_ok(name)?;
        let mut m = Msg::new(RTM_DELLINK, 0);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        match self.call(m, &format!("delete interface {name}"), false) {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("No such device") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds `addr/prefix` to interface `index`.
    pub(crate) fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        m.buf.push(AF_INET);
        m.buf.push(prefix);
        m.buf.push(0); // flags
        m.buf.push(0); // scope universe
        m.buf.extend_from_slice(&index.to_ne_bytes());
        m.attr(IFA_LOCAL, &addr.octets());
        m.attr(IFA_ADDRESS, &addr.octets());
        self.call(m, &format!("add address {addr}/{prefix}"), false)
            .map(drop)
    }

    /// Adds an on-link route to `dst/prefix` through interface `oif`.
    pub(crate) fn add_link_route(&mut self, dst: Ipv4Addr, prefix: u8, oif: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        m.buf.extend_from_slice(&[
            AF_INET, prefix, 0, 0, 254, // RT_TABLE_MAIN
            3,   // RTPROT_BOOT
            253, // RT_SCOPE_LINK
            1,   // RTN_UNICAST
        ]);
        m.buf.extend_from_slice(&0u32.to_ne_bytes());
        m.attr(RTA_DST, &dst.octets());
        m.attr(RTA_OIF, &oif.to_ne_bytes());
        self.call(m, &format!("add route {dst}/{prefix}"), false)
            .map(drop)
    }

    /// Adds the default route via `gateway`.
    pub(crate) fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        m.buf.extend_from_slice(&[
            AF_INET, 0,   // dst_len: default route
            0,   // src_len
            0,   // tos
            254, // RT_TABLE_MAIN
            3,   // RTPROT_BOOT
            0,   // RT_SCOPE_UNIVERSE
            1,   // RTN_UNICAST
        ]);
        m.buf.extend_from_slice(&0u32.to_ne_bytes());
        m.attr(RTA_GATEWAY, &gateway.octets());
        self.call(m, &format!("add default route via {gateway}"), false)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_are_sized_and_aligned() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE);
        m.ifinfo(0, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, "br0"); // 4 + 4 bytes
        let li = m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth"); // 4 + 5 -> padded to 12
        m.end(li);
        let b = m.finish(7);
        assert_eq!(b.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        // ifname attribute right after the 32 bytes of header + ifinfomsg.
        assert_eq!(u16::from_ne_bytes([b[32], b[33]]), 8);
        assert_eq!(&b[36..39], b"br0");
        // linkinfo: 4 (own header) + 12 (kind attr with "veth\0" padded).
        assert_eq!(u16::from_ne_bytes([b[40], b[41]]), 4 + 12);
        assert_eq!(u16::from_ne_bytes([b[42], b[43]]), IFLA_LINKINFO);
    }

    #[test]
    fn bad_interface_names_are_refused() {
        assert!(ifname_ok("a-very-long-interface-name").is_err());
        assert!(ifname_ok("").is_err());
        assert!(ifname_ok("a/b").is_err());
        assert!(ifname_ok("eth0").is_ok());
    }
}
