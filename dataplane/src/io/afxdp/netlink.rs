//! The rtnetlink questions the ports ask: what a device links to (a veth's
//! peer), whether that lies in another network namespace, and which namespace
//! a namespace file is.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// A device's link (IFLA_LINK) and the namespace id it lives in when that is
/// not the device's own (IFLA_LINK_NETNSID).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) index: Option<u32>,
    pub(crate) netnsid: Option<i32>,
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Send one request in the calling thread's network namespace and return the
/// answer (an error answer as the errno it carries).
fn ask(what: &str, msg: RouteNetlinkMessage) -> io::Result<RouteNetlinkMessage> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut req = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut reply = vec![0; 16 * 1024];
    let n = socket.recv(&mut &mut reply[..], 0)?;
    let got: NetlinkMessage<RouteNetlinkMessage> =
        NetlinkMessage::deserialize(&reply[..n]).map_err(|e| bad(format!("{what} reply: {e}")))?;
    match got.payload {
        NetlinkPayload::InnerMessage(m) => Ok(m),
        NetlinkPayload::Error(e) => Err(e
            .code
            .map(|c| io::Error::from_raw_os_error(-c.get()))
            .unwrap_or_else(|| bad(format!("{what}: an ack without an answer")))),
        other => Err(bad(format!("{what}: unexpected reply {other:?}"))),
    }
}

/// RTM_GETLINK for `ifindex`.
pub(crate) fn link_of(ifindex: u32) -> io::Result<Link> {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    match ask("RTM_GETLINK", RouteNetlinkMessage::GetLink(msg))? {
        RouteNetlinkMessage::NewLink(m) => {
            let mut link = Link::default();
            for a in m.attributes {
                match a {
                    LinkAttribute::Link(i) => link.index = Some(i),
                    LinkAttribute::LinkNetNsId(id) => link.netnsid = Some(id),
                    _ => {}
                }
            }
            Ok(link)
        }
        other => Err(bad(format!("RTM_GETLINK: unexpected answer {other:?}"))),
    }
}

/// RTM_GETNSID: the id this namespace has for the namespace `ns` (a file of
/// /proc/PID/ns/net or /run/netns); None when it has none (it is not a peer's).
pub(crate) fn nsid_of(ns: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    let mut msg = NsidMessage::default();
    msg.attributes
        .push(NsidAttribute::Fd(ns.as_raw_fd() as u32));
    match ask("RTM_GETNSID", RouteNetlinkMessage::GetNsId(msg))? {
        RouteNetlinkMessage::NewNsId(m) => Ok(m.attributes.iter().find_map(|a| match a {
            NsidAttribute::Id(id) if *id >= 0 => Some(*id),
            _ => None,
        })),
        other => Err(bad(format!("RTM_GETNSID: unexpected answer {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_links_nowhere_and_a_missing_device_is_an_error() {
        assert_eq!(link_of(1).expect("lo"), Link::default());
        let e = link_of(999_999).expect_err("no such device");
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
    }
}
