//! rtnetlink, the kernel's routing socket (`NETLINK_ROUTE`, rtnetlink(7)): what the link lifecycle
//! ([`super::network`]) learns about links (carrier, from `IFF_LOWER_UP` and the operstate) and IPv4
//! addresses (the DHCP lease), and the one request it makes (bring a link up).
//!
//! Message encoding and decoding are pure functions over bytes, checked byte for byte in the tests
//! against the layouts of `include/uapi/linux/netlink.h` (`struct nlmsghdr`, `NLMSG_ALIGN` to 4),
//! `include/uapi/linux/rtnetlink.h` (`struct ifinfomsg`, `struct rtattr`, `RTA_ALIGN`),
//! `include/uapi/linux/if_addr.h` (`struct ifaddrmsg`, `IFA_*`) and `include/uapi/linux/if_link.h`
//! (`IFLA_*`). The socket is a thin shell through `nix`'s safe wrappers. A crate was not used:
//! `netlink-packet-route` and its `netlink-sys`/`netlink-packet-core` stack are larger than the handful
//! of fields read here.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// `NLMSG_ERROR` (netlink.h).
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
const NLMSG_DONE: u16 = 3;
/// `RTM_NEWLINK` (rtnetlink.h).
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_DELLINK`.
pub const RTM_DELLINK: u16 = 17;
/// `RTM_GETLINK`.
pub const RTM_GETLINK: u16 = 18;
/// `RTM_NEWADDR`.
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_DELADDR`.
pub const RTM_DELADDR: u16 = 21;
/// `RTM_GETADDR`.
pub const RTM_GETADDR: u16 = 22;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_DUMP: u16 = 0x300;
/// `RTMGRP_LINK`: link changes.
const RTMGRP_LINK: u32 = 0x1;
/// `RTMGRP_IPV4_IFADDR`: IPv4 address changes.
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
/// `IFLA_IFNAME`: the link's name, NUL-terminated.
const IFLA_IFNAME: u16 = 3;
/// `IFLA_OPERSTATE`: one byte, RFC 2863 (`IF_OPER_UP` = 6).
const IFLA_OPERSTATE: u16 = 16;
/// `IFA_ADDRESS`.
const IFA_ADDRESS: u16 = 1;
/// `IFA_LOCAL`: the address of the interface itself (on point-to-point links `IFA_ADDRESS` is the peer).
const IFA_LOCAL: u16 = 2;
/// `IFF_UP` (if.h): the link is administratively up.
pub const IFF_UP: u32 = 0x1;
/// `IFF_LOOPBACK`.
pub const IFF_LOOPBACK: u32 = 0x8;
/// `IFF_LOWER_UP`: the driver signals carrier (a cable with a live switch port at the other end).
pub const IFF_LOWER_UP: u32 = 0x1_0000;
/// `IF_OPER_UP` (RFC 2863 via if.h's `enum IF_OPER_*`).
pub const IF_OPER_UP: u8 = 6;
/// `AF_INET`.
const AF_INET: u8 = 2;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct ifinfomsg)`: family, pad, type (u16), index (i32), flags (u32), change (u32).
const IFINFOMSG_LEN: usize = 16;
/// `sizeof(struct ifaddrmsg)`: family, prefixlen, flags, scope (u8 each), index (u32).
const IFADDRMSG_LEN: usize = 8;

/// A link as an `RTM_NEWLINK` / `RTM_DELLINK` message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `ifi_index`.
    pub index: u32,
    /// `IFLA_IFNAME`.
    pub name: Option<String>,
    /// `ifi_flags` (`IFF_*`).
    pub flags: u32,
    /// `IFLA_OPERSTATE`, when sent.
    pub operstate: Option<u8>,
}

impl Link {
    /// Whether the link has carrier: `IFF_LOWER_UP`, or the operstate `up` from drivers that report it.
    pub fn carrier(&self) -> bool {
        self.flags & IFF_LOWER_UP != 0 || self.operstate == Some(IF_OPER_UP)
    }

    /// Whether it is administratively up.
    pub fn up(&self) -> bool {
        self.flags & IFF_UP != 0
    }
}

/// An IPv4 address on a link, from `RTM_NEWADDR` / `RTM_DELADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// `ifa_index`.
    pub index: u32,
    /// `ifa_prefixlen`.
    pub prefix: u8,
    /// `IFA_LOCAL`, else `IFA_ADDRESS`.
    pub address: Ipv4Addr,
}

/// One decoded rtnetlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A link appeared or changed.
    NewLink(Link),
    /// A link went away.
    DelLink(Link),
    /// An IPv4 address was added.
    NewAddr(Addr),
    /// An IPv4 address was removed.
    DelAddr(Addr),
    /// The end of a dump.
    Done,
    /// An acknowledgement (`0`) or an error (a negative errno) for request `seq`.
    Ack {
        /// The request's sequence number.
        seq: u32,
        /// `0` or `-errno`.
        error: i32,
    },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// `NLMSG_ALIGN` / `RTA_ALIGN`: up to a multiple of 4.
fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The `struct rtattr`s in `b`: (type, payload). Stops at the first malformed one.
fn attributes(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u16_at(b, at), u16_at(b, at + 2)) {
        let len = usize::from(len);
        if len < 4 || at + len > b.len() {
            break;
        }
        // The top bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
        out.push((kind & 0x3fff, &b[at + 4..at + len]));
        at += align4(len);
    }
    out
}

fn parse_link(body: &[u8]) -> Option<Link> {
    let index = u32_at(body, 4)?;
    let flags = u32_at(body, 8)?;
    let mut link = Link {
        index,
        name: None,
        flags,
        operstate: None,
    };
    for (kind, value) in attributes(body.get(IFINFOMSG_LEN..)?) {
        match kind {
            IFLA_IFNAME => {
                let text = value.split(|b| *b == 0).next().unwrap_or_default();
                link.name = std::str::from_utf8(text).ok().map(str::to_owned);
            }
            IFLA_OPERSTATE => link.operstate = value.first().copied(),
            _ => {}
        }
    }
    Some(link)
}

fn parse_addr(body: &[u8]) -> Option<Addr> {
    if *body.first()? != AF_INET {
        return None;
    }
    let prefix = *body.get(1)?;
    let index = u32_at(body, 4)?;
    let (mut local, mut address) = (None, None);
    for (kind, value) in attributes(body.get(IFADDRMSG_LEN..)?) {
        let ip = <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from);
        match kind {
            IFA_LOCAL => local = ip,
            IFA_ADDRESS => address = ip,
            _ => {}
        }
    }
    Some(Addr {
        index,
        prefix,
        address: local.or(address)?,
    })
}

/// Decodes every message of one datagram; messages of other types (and IPv6 addresses) are skipped.
pub fn parse(datagram: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(kind), Some(seq)) =
        (u32_at(datagram, at), u16_at(datagram, at + 4), u32_at(datagram, at + 8))
    {
        let Ok(len) = usize::try_from(len) else { break };
        if len < NLMSG_HDRLEN || at + len > datagram.len() {
            break;
        }
        let body = &datagram[at + NLMSG_HDRLEN..at + len];
        let message = match kind {
            RTM_NEWLINK => parse_link(body).map(Message::NewLink),
            RTM_DELLINK => parse_link(body).map(Message::DelLink),
            RTM_NEWADDR => parse_addr(body).map(Message::NewAddr),
            RTM_DELADDR => parse_addr(body).map(Message::DelAddr),
            NLMSG_DONE => Some(Message::Done),
            NLMSG_ERROR => u32_at(body, 0).map(|e| Message::Ack {
                seq,
                error: i32::from_ne_bytes(e.to_ne_bytes()),
            }),
            _ => None,
        };
        out.extend(message);
        at += align4(len);
    }
    out
}

/// A `struct nlmsghdr` followed by `body`.
fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(NLMSG_HDRLEN + body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the message is for the kernel.
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(body);
    out
}

/// A `struct ifinfomsg` (family `AF_UNSPEC`).
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut b = [0u8; IFINFOMSG_LEN];
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// `RTM_GETLINK` dump: every link.
pub fn dump_links(seq: u32) -> Vec<u8> {
    message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, &ifinfomsg(0, 0, 0))
}

/// `RTM_GETADDR` dump of the IPv4 addresses.
pub fn dump_ipv4_addresses(seq: u32) -> Vec<u8> {
    let mut ifaddrmsg = [0u8; IFADDRMSG_LEN];
    ifaddrmsg[0] = AF_INET;
    message(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, &ifaddrmsg)
}

/// `RTM_NEWLINK` setting `IFF_UP` on link `index` (what `ip link set dev X up` sends), acknowledged.
pub fn set_up(index: u32, seq: u32) -> Vec<u8> {
    message(
        RTM_NEWLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        &ifinfomsg(index, IFF_UP, IFF_UP),
    )
}

/// A `NETLINK_ROUTE` socket subscribed to link and IPv4 address changes.
#[derive(Debug)]
pub struct RouteSocket(OwnedFd);

impl RouteSocket {
    /// Opens and binds it.
    pub fn open() -> nix::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))?;
        Ok(Self(fd))
    }

    /// Sends one request to the kernel.
    pub fn send(&self, request: &[u8]) -> nix::Result<()> {
        sendto(self.0.as_raw_fd(), request, &NetlinkAddr::new(0, 0), MsgFlags::empty()).map(|_| ())
    }

    /// The messages of the next datagram, or nothing after `timeout`.
    pub fn recv(&self, timeout: Duration) -> nix::Result<Vec<Message>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        if poll(&mut fds, PollTimeout::from(ms))? == 0 {
            return Ok(Vec::new());
        }
        // A dump of a few links fits in one page; 32 KiB is what iproute2 uses.
        let mut buf = vec![0u8; 32 * 1024];
        let n = recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        Ok(parse(&buf[..n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `RTM_NEWLINK` for `eth0` (index 2), up with carrier, operstate up, as the kernel sends it
    /// (flags `IFF_UP|IFF_BROADCAST|IFF_RUNNING|IFF_MULTICAST|IFF_LOWER_UP` = 0x11043), with an
    /// `IFLA_MTU` before the name to be skipped.
    fn eth0_up() -> Vec<u8> {
        let mut m = Vec::new();
        // nlmsghdr: len 60, RTM_NEWLINK, flags 0, seq 0, pid 0.
        m.extend_from_slice(&60u32.to_ne_bytes());
        m.extend_from_slice(&16u16.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // ifinfomsg: AF_UNSPEC, pad, ARPHRD_ETHER (1), index 2, flags, change 0.
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&1u16.to_ne_bytes());
        m.extend_from_slice(&2i32.to_ne_bytes());
        m.extend_from_slice(&0x11043u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // IFLA_MTU (4): len 8, 1500.
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&4u16.to_ne_bytes());
        m.extend_from_slice(&1500u32.to_ne_bytes());
        // IFLA_IFNAME (3): len 9 ("eth0\0"), padded to 12.
        m.extend_from_slice(&9u16.to_ne_bytes());
        m.extend_from_slice(&3u16.to_ne_bytes());
        m.extend_from_slice(b"eth0\0\0\0\0");
        // IFLA_OPERSTATE (16): len 5, IF_OPER_UP, padded to 8.
        m.extend_from_slice(&5u16.to_ne_bytes());
        m.extend_from_slice(&16u16.to_ne_bytes());
        m.extend_from_slice(&[6, 0, 0, 0]);
        assert_eq!(m.len(), 60);
        m
    }

    /// An `RTM_NEWADDR` for 10.0.2.15/24 on index 2, with `IFA_ADDRESS`, `IFA_LOCAL` and an
    /// `IFA_LABEL`.
    fn addr(kind: u16) -> Vec<u8> {
        let mut m = Vec::new();
        // nlmsg_len counts the last attribute's padding, as the kernel's nlmsg_end() does.
        m.extend_from_slice(&52u32.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // ifaddrmsg: AF_INET, /24, flags 0, RT_SCOPE_UNIVERSE, index 2.
        m.extend_from_slice(&[2, 24, 0, 0]);
        m.extend_from_slice(&2u32.to_ne_bytes());
        for (t, ip) in [(1u16, [10, 0, 2, 15]), (2u16, [10, 0, 2, 15])] {
            m.extend_from_slice(&8u16.to_ne_bytes());
            m.extend_from_slice(&t.to_ne_bytes());
            m.extend_from_slice(&ip);
        }
        // IFA_LABEL (3): "eth0\0" len 9, padded.
        m.extend_from_slice(&9u16.to_ne_bytes());
        m.extend_from_slice(&3u16.to_ne_bytes());
        m.extend_from_slice(b"eth0\0");
        assert_eq!(m.len(), 49);
        m.extend_from_slice(&[0, 0, 0]);
        m
    }

    #[test]
    fn a_new_link_with_carrier_decodes() {
        let msgs = parse(&eth0_up());
        let link = Link {
            index: 2,
            name: Some("eth0".into()),
            flags: 0x11043,
            operstate: Some(IF_OPER_UP),
        };
        assert_eq!(msgs, [Message::NewLink(link.clone())]);
        assert!(link.carrier() && link.up());
        // The cable pulled: IFF_LOWER_UP and IFF_RUNNING cleared, operstate down (2).
        let mut down = eth0_up();
        down[24..28].copy_from_slice(&0x1003u32.to_ne_bytes());
        down[56] = 2;
        let Message::NewLink(l) = &parse(&down)[0] else {
            panic!()
        };
        assert!(!l.carrier() && l.up());
    }

    #[test]
    fn ipv4_addresses_decode_and_ipv6_ones_are_skipped() {
        let want = Addr {
            index: 2,
            prefix: 24,
            address: Ipv4Addr::new(10, 0, 2, 15),
        };
        // Two messages in one datagram (a dump), then NLMSG_DONE.
        let mut d = addr(RTM_NEWADDR);
        d.extend(addr(RTM_DELADDR));
        let mut done = message(NLMSG_DONE, 0x2, 7, &0i32.to_ne_bytes());
        d.append(&mut done);
        assert_eq!(
            parse(&d),
            [Message::NewAddr(want), Message::DelAddr(want), Message::Done]
        );
        let mut v6 = addr(RTM_NEWADDR);
        v6[16] = 10; // AF_INET6
        assert!(parse(&v6).is_empty());
        // A truncated datagram yields what was whole.
        let cut = &d[..52 + 30];
        assert_eq!(parse(cut), [Message::NewAddr(want)]);
    }

    #[test]
    fn requests_are_encoded_as_iproute2_sends_them() {
        let up = set_up(3, 9);
        let mut want = Vec::new();
        want.extend_from_slice(&32u32.to_ne_bytes());
        want.extend_from_slice(&16u16.to_ne_bytes()); // RTM_NEWLINK
        want.extend_from_slice(&5u16.to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
        want.extend_from_slice(&9u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(&3u32.to_ne_bytes());
        want.extend_from_slice(&1u32.to_ne_bytes()); // ifi_flags IFF_UP
        want.extend_from_slice(&1u32.to_ne_bytes()); // ifi_change IFF_UP
        assert_eq!(up, want);
        let dump = dump_links(1);
        assert_eq!(dump.len(), 32);
        let mut head = 18u16.to_ne_bytes().to_vec();
        head.extend_from_slice(&0x301u16.to_ne_bytes()); // NLM_F_REQUEST | NLM_F_DUMP
        assert_eq!(&dump[4..8], &head[..]);
        let addrs = dump_ipv4_addresses(2);
        assert_eq!(addrs.len(), 24);
        assert_eq!(addrs[16], AF_INET);
        // An error answer: nlmsgerr's error field, -ENODEV (19).
        let err = message(NLMSG_ERROR, 0, 9, &(-19i32).to_ne_bytes());
        assert_eq!(parse(&err), [Message::Ack { seq: 9, error: -19 }]);
    }

    #[test]
    fn the_running_kernel_lists_its_loopback_link() {
        // A dump needs no privilege; the host's own `lo` is index 1 with IFF_LOOPBACK.
        let sock = RouteSocket::open().unwrap();
        sock.send(&dump_links(1)).unwrap();
        let mut links = Vec::new();
        'dump: for _ in 0..50 {
            for m in sock.recv(Duration::from_secs(2)).unwrap() {
                match m {
                    Message::NewLink(l) => links.push(l),
                    Message::Done => break 'dump,
                    _ => {}
                }
            }
        }
        let lo = links
            .iter()
            .find(|l| l.flags & IFF_LOOPBACK != 0)
            .unwrap_or_else(|| panic!("no loopback link in {links:?}"));
        assert_eq!(lo.name.as_deref(), Some("lo"));
    }
}
