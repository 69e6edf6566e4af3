//! What VIVER answers to one DHCP request: who the client is (BIOS PXE, UEFI PXE,
//! UEFI HTTP boot, iPXE, or an ordinary DHCP client), which boot file it gets, and the
//! reply (proxyDHCP offer, full offer/ack/nak, or silence). No sockets here: the
//! address pool is behind [`AddressPool`] so every rule is unit-tested.

use crate::net::dhcp::wire::{mac_text, opt, MessageType, Packet};
use std::net::Ipv4Addr;

/// How VIVER takes part in DHCP on its segment (after the start-up survey).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Addresses and PXE information: there is no other DHCP server.
    Full,
    /// PXE information only (no addresses): the segment has its own DHCP server.
    Proxy,
    /// Nothing: another PXE server answers here (or the survey has not ended).
    Silent,
    /// DHCP disabled by the operator (TFTP and HTTP only).
    Off,
}

/// Client architectures of option 93 (RFC 4578, IANA registry).
pub const ARCH_BIOS: u16 = 0;
pub const ARCH_EFI_X64: u16 = 7;
pub const ARCH_EFI_BC: u16 = 9;
pub const ARCH_EFI_X64_HTTP: u16 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// iPXE already runs: hand it the HTTP boot script.
    Ipxe,
    /// BIOS PXE ROM: TFTP undionly.kpxe.
    BiosPxe,
    /// x86-64 UEFI PXE: TFTP ipxe.efi (or snponly.efi).
    UefiPxe,
    /// x86-64 UEFI HTTP boot: an HTTP URL of ipxe.efi.
    UefiHttp,
    /// PXE/HTTP client of an architecture VIVER has no binary for.
    OtherArch(u16),
    /// Not a network-boot client.
    Plain,
}

pub fn arch(p: &Packet) -> Option<u16> {
    match p.get(opt::CLIENT_ARCH) {
        Some([a, b, ..]) => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

pub fn is_ipxe(p: &Packet) -> bool {
    p.get(opt::IPXE_ENCAP).is_some() || p.get(opt::USER_CLASS).is_some_and(|u| u.windows(4).any(|w| w == b"iPXE"))
}

pub fn classify(p: &Packet) -> ClientKind {
    let vendor = p.get(opt::VENDOR_CLASS).unwrap_or_default();
    let pxe = vendor.starts_with(b"PXEClient");
    let http = vendor.starts_with(b"HTTPClient");
    if is_ipxe(p) {
        return ClientKind::Ipxe;
    }
    if !pxe && !http {
        return ClientKind::Plain;
    }
    match arch(p) {
        Some(ARCH_EFI_X64_HTTP) => ClientKind::UefiHttp,
        Some(_) if http => ClientKind::OtherArch(arch(p).unwrap_or(0)),
        None if http => ClientKind::UefiHttp,
        None | Some(ARCH_BIOS) => ClientKind::BiosPxe,
        Some(ARCH_EFI_X64) | Some(ARCH_EFI_BC) => ClientKind::UefiPxe,
        Some(other) => ClientKind::OtherArch(other),
    }
}

/// What the server offers to boot.
#[derive(Clone, Debug, PartialEq)]
pub struct BootPlan {
    pub server: Ipv4Addr,
    /// `http://SERVER:PORT`
    pub http_base: String,
    /// TFTP name of the BIOS binary (`undionly.kpxe`), if available.
    pub bios_file: Option<String>,
    /// TFTP name of the x86-64 UEFI binary (`ipxe.efi` or `snponly.efi`), if available.
    pub efi_file: Option<String>,
    /// HTTP path of the UEFI binary for HTTP boot (`/ipxe/ipxe.efi`), if available.
    pub efi_http_path: Option<String>,
    /// HTTP path of the iPXE script (`/boot.ipxe`).
    pub script_path: String,
}

/// The boot file for one client and the option 60 that goes with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Boot {
    pub file: String,
    pub vendor_class: &'static str,
    pub tftp: bool,
}

pub fn boot_for(kind: ClientKind, plan: &BootPlan) -> Option<Boot> {
    let tftp = |file: &Option<String>| file.as_ref().map(|f| Boot { file: f.clone(), vendor_class: "PXEClient", tftp: true });
    match kind {
        ClientKind::Ipxe => Some(Boot { file: format!("{}{}", plan.http_base, plan.script_path), vendor_class: "PXEClient", tftp: false }),
        ClientKind::BiosPxe => tftp(&plan.bios_file),
        ClientKind::UefiPxe => tftp(&plan.efi_file),
        ClientKind::UefiHttp => {
            plan.efi_http_path.as_ref().map(|p| Boot { file: format!("{}{p}", plan.http_base), vendor_class: "HTTPClient", tftp: false })
        }
        ClientKind::OtherArch(_) | ClientKind::Plain => None,
    }
}

/// Addresses for full mode (see `leases.rs`).
pub trait AddressPool {
    /// An address to offer `mac` (its lease, the requested one if free, or a free one
    /// nobody answers for); None when the pool is exhausted.
    fn offer(&mut self, mac: [u8; 6], requested: Option<Ipv4Addr>) -> Option<Ipv4Addr>;
    /// Binds `ip` to `mac`; false if the address is not ours to give or is taken.
    fn commit(&mut self, mac: [u8; 6], ip: Ipv4Addr) -> bool;
    fn release(&mut self, mac: [u8; 6], ip: Ipv4Addr);
    fn decline(&mut self, ip: Ipv4Addr);
}

/// Network settings handed out in full mode.
#[derive(Clone, Debug, PartialEq)]
pub struct Lan {
    pub netmask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub lease_secs: u32,
}

/// Where a reply goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// 255.255.255.255:68 on the server's interface.
    Broadcast,
    /// A configured client (ciaddr) or a relay (giaddr, port 67).
    Unicast(Ipv4Addr, u16),
    /// Back to the packet's source (port 4011 requests).
    Source,
}

#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub reply: Option<(Packet, Dest)>,
    /// One line for the log: what the request was and what was decided.
    pub note: String,
}

/// Which socket the request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Dhcp,
    /// 4011: the PXE boot server discovery port (proxyDHCP REQUEST/INFORM).
    Pxe,
}

pub struct Context<'a> {
    pub mode: Mode,
    pub plan: &'a BootPlan,
    pub lan: &'a Lan,
    /// The server's own MAC: its own survey DISCOVERs are not answered.
    pub own_mac: Option<[u8; 6]>,
}

fn silent(note: String) -> Outcome {
    Outcome { reply: None, note }
}

fn dest_for(req: &Packet, kind: MessageType) -> Dest {
    if req.giaddr != Ipv4Addr::UNSPECIFIED {
        Dest::Unicast(req.giaddr, 67)
    } else if req.ciaddr != Ipv4Addr::UNSPECIFIED && kind != MessageType::Nak {
        Dest::Unicast(req.ciaddr, 68)
    } else {
        Dest::Broadcast
    }
}

/// Adds the PXE options (43, 60, 66, 67, 97, BOOTP `file` and `siaddr`) to a reply.
fn add_boot(reply: &mut Packet, req: &Packet, boot: &Boot, plan: &BootPlan) {
    reply.siaddr = plan.server;
    reply.file = boot.file.as_bytes().to_vec();
    reply.set(opt::VENDOR_CLASS, boot.vendor_class.as_bytes().to_vec());
    if boot.vendor_class == "PXEClient" {
        // PXE discovery control (sub-option 6) bit 3: boot the file given, no menu,
        // no boot-server discovery.
        reply.set(opt::VENDOR_SPECIFIC, vec![6, 1, 8, opt::END]);
    }
    if boot.tftp {
        reply.set(opt::TFTP_SERVER, plan.server.to_string().into_bytes());
    }
    reply.set(opt::BOOTFILE, boot.file.as_bytes().to_vec());
    if let Some(uuid) = req.get(opt::CLIENT_UUID) {
        reply.set(opt::CLIENT_UUID, uuid.to_vec());
    }
}

fn add_lease(reply: &mut Packet, lan: &Lan) {
    reply.set(opt::LEASE_TIME, lan.lease_secs.to_be_bytes().to_vec());
    reply.set(opt::RENEWAL_TIME, (lan.lease_secs / 2).to_be_bytes().to_vec());
    reply.set(opt::REBINDING_TIME, (lan.lease_secs / 8 * 7).to_be_bytes().to_vec());
    reply.set(opt::SUBNET_MASK, lan.netmask.octets().to_vec());
    if let Some(router) = lan.router {
        reply.set(opt::ROUTER, router.octets().to_vec());
    }
}

/// The decision for one request.
pub fn handle(req: &Packet, port: Port, ctx: &Context, pool: &mut dyn AddressPool) -> Outcome {
    let Some(kind) = req.message_type() else {
        return silent("BOOTP request without DHCP message type: ignored".into());
    };
    let Some(mac) = req.mac() else {
        return silent(format!("{kind:?} with hardware type {} / length {}: ignored", req.htype, req.hlen));
    };
    if req.op != crate::net::dhcp::wire::BOOTREQUEST {
        return silent(format!("{kind:?} from {}: not a BOOTREQUEST", mac_text(&mac)));
    }
    if Some(mac) == ctx.own_mac {
        return silent("own survey packet".into());
    }
    let who = mac_text(&mac);
    let client = classify(req);
    let boot = boot_for(client, ctx.plan);
    let server_id = ctx.plan.server;
    let reply_with = |kind_out: MessageType| {
        let mut reply = req.reply(kind_out);
        reply.set(opt::SERVER_ID, server_id.octets().to_vec());
        reply
    };
    let boot_note = |b: &Option<Boot>| match b {
        Some(b) => format!("{client:?} -> {}", b.file),
        None => format!("{client:?}, no boot file"),
    };
    match ctx.mode {
        Mode::Off | Mode::Silent => silent(format!("{kind:?} from {who}: DHCP {:?}", ctx.mode)),
        _ if ctx.mode == Mode::Proxy || port == Port::Pxe => {
            // proxyDHCP: only boot information, only to network-boot clients.
            let Some(boot) = boot else {
                return silent(format!("{kind:?} from {who} ({}): not answered in proxy mode", boot_note(&None)));
            };
            let for_us = req.ip_option(opt::SERVER_ID).is_none_or(|id| id == server_id);
            let out_kind = match (kind, port) {
                (MessageType::Discover, Port::Dhcp) => MessageType::Offer,
                (MessageType::Request, Port::Pxe) | (MessageType::Inform, _) => MessageType::Ack,
                // A PXE client that only sends DHCPREQUEST (INIT-REBOOT with the address
                // it had, no DISCOVER, so it never saw the proxy's offer): the boot
                // information in an ACK without an address. A REQUEST naming another
                // server is that server's business.
                (MessageType::Request, Port::Dhcp) if for_us => MessageType::Ack,
                _ => return silent(format!("{kind:?} from {who}: not for the proxy")),
            };
            let mut reply = reply_with(out_kind);
            add_boot(&mut reply, req, &boot, ctx.plan);
            let dest = if port == Port::Pxe { Dest::Source } else { dest_for(req, out_kind) };
            Outcome { reply: Some((reply, dest)), note: format!("proxy {out_kind:?} to {who}: {}", boot_note(&Some(boot))) }
        }
        _ => {
            let note = boot_note(&boot);
            full(req, kind, mac, &who, ctx, pool, boot, &note)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn full(
    req: &Packet,
    kind: MessageType,
    mac: [u8; 6],
    who: &str,
    ctx: &Context,
    pool: &mut dyn AddressPool,
    boot: Option<Boot>,
    boot_note: &str,
) -> Outcome {
    let server = ctx.plan.server;
    let answer = |out: MessageType, yiaddr: Ipv4Addr, with_lease: bool| {
        let mut reply = req.reply(out);
        reply.set(opt::SERVER_ID, server.octets().to_vec());
        reply.yiaddr = yiaddr;
        if with_lease {
            add_lease(&mut reply, ctx.lan);
        }
        if out != MessageType::Nak {
            if let Some(boot) = &boot {
                add_boot(&mut reply, req, boot, ctx.plan);
            }
        }
        let dest = dest_for(req, out);
        reply.options.sort_by_key(|(code, _)| if *code == opt::MESSAGE_TYPE { 0 } else { 1 });
        (reply, dest)
    };
    let requested = req.ip_option(opt::REQUESTED_IP);
    match kind {
        MessageType::Discover => match pool.offer(mac, requested) {
            Some(ip) => Outcome { reply: Some(answer(MessageType::Offer, ip, true)), note: format!("OFFER {ip} to {who} ({boot_note})") },
            None => silent(format!("DISCOVER from {who}: no free address in the range")),
        },
        MessageType::Request => {
            let server_id = req.ip_option(opt::SERVER_ID);
            if server_id.is_some_and(|id| id != server) {
                if let Some(ip) = requested {
                    pool.release(mac, ip);
                }
                return silent(format!("REQUEST from {who} for server {:?}: not us", server_id));
            }
            let (ip, state) = match (server_id, requested, req.ciaddr) {
                (Some(_), Some(ip), _) => (ip, "selecting"),
                (None, Some(ip), Ipv4Addr::UNSPECIFIED) => (ip, "init-reboot"),
                (None, _, ciaddr) if ciaddr != Ipv4Addr::UNSPECIFIED => (ciaddr, "renewing"),
                _ => return silent(format!("REQUEST from {who} without an address: ignored")),
            };
            if pool.commit(mac, ip) {
                Outcome { reply: Some(answer(MessageType::Ack, ip, true)), note: format!("ACK {ip} to {who} ({state}; {boot_note})") }
            } else {
                let (mut nak, dest) = answer(MessageType::Nak, Ipv4Addr::UNSPECIFIED, false);
                nak.set(opt::MESSAGE, format!("{ip} is not available").into_bytes());
                Outcome { reply: Some((nak, dest)), note: format!("NAK {ip} to {who} ({state})") }
            }
        }
        MessageType::Inform => Outcome {
            reply: Some(answer(MessageType::Ack, Ipv4Addr::UNSPECIFIED, false)),
            note: format!("ACK to INFORM of {who} ({boot_note})"),
        },
        MessageType::Release => {
            pool.release(mac, req.ciaddr);
            silent(format!("RELEASE {} by {who}", req.ciaddr))
        }
        MessageType::Decline => {
            if let Some(ip) = requested {
                pool.decline(ip);
            }
            silent(format!("DECLINE {:?} by {who}: address marked in use", requested))
        }
        other => silent(format!("{other:?} from {who}: a client never sends that")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakePool(Vec<([u8; 6], Ipv4Addr)>);
    impl AddressPool for FakePool {
        fn offer(&mut self, mac: [u8; 6], _requested: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
            Some(self.0.iter().find(|(m, _)| *m == mac).map(|(_, ip)| *ip).unwrap_or(Ipv4Addr::new(10, 0, 0, 100)))
        }
        fn commit(&mut self, mac: [u8; 6], ip: Ipv4Addr) -> bool {
            if self.0.iter().any(|(m, i)| *i == ip && *m != mac) {
                return false;
            }
            self.0.push((mac, ip));
            true
        }
        fn release(&mut self, mac: [u8; 6], _ip: Ipv4Addr) {
            self.0.retain(|(m, _)| *m != mac);
        }
        fn decline(&mut self, _ip: Ipv4Addr) {}
    }

    fn plan() -> BootPlan {
        BootPlan {
            server: Ipv4Addr::new(10, 0, 0, 1),
            http_base: "http://10.0.0.1:80".into(),
            bios_file: Some("undionly.kpxe".into()),
            efi_file: Some("ipxe.efi".into()),
            efi_http_path: Some("/ipxe/ipxe.efi".into()),
            script_path: "/boot.ipxe".into(),
        }
    }
    fn lan() -> Lan {
        Lan { netmask: Ipv4Addr::new(255, 255, 255, 0), router: None, lease_secs: 3600 }
    }
    fn pxe(kind: MessageType, arch: u16) -> Packet {
        let mut p = Packet::request(kind, 7, [2, 0, 0, 0, 0, 9]);
        p.set(opt::VENDOR_CLASS, format!("PXEClient:Arch:{arch:05}:UNDI:002001").into_bytes());
        p.set(opt::CLIENT_ARCH, arch.to_be_bytes().to_vec());
        p.set(opt::CLIENT_UUID, vec![0; 17]);
        p
    }
    fn run(req: &Packet, mode: Mode, port: Port, pool: &mut FakePool) -> Outcome {
        let (plan, lan) = (plan(), lan());
        let ctx = Context { mode, plan: &plan, lan: &lan, own_mac: Some([2, 0, 0, 0, 0, 1]) };
        handle(req, port, &ctx, pool)
    }

    #[test]
    fn classifies_clients() {
        assert_eq!(classify(&pxe(MessageType::Discover, 0)), ClientKind::BiosPxe);
        assert_eq!(classify(&pxe(MessageType::Discover, 7)), ClientKind::UefiPxe);
        assert_eq!(classify(&pxe(MessageType::Discover, 9)), ClientKind::UefiPxe);
        assert_eq!(classify(&pxe(MessageType::Discover, 11)), ClientKind::OtherArch(11));
        let mut http = Packet::request(MessageType::Discover, 1, [2; 6]);
        http.set(opt::VENDOR_CLASS, b"HTTPClient:Arch:00016:UNDI:003001".to_vec());
        http.set(opt::CLIENT_ARCH, vec![0, 16]);
        assert_eq!(classify(&http), ClientKind::UefiHttp);
        let mut ipxe = pxe(MessageType::Discover, 0);
        ipxe.set(opt::USER_CLASS, b"iPXE".to_vec());
        assert_eq!(classify(&ipxe), ClientKind::Ipxe);
        assert_eq!(classify(&Packet::request(MessageType::Discover, 1, [2; 6])), ClientKind::Plain);
    }

    #[test]
    fn proxy_offer_carries_pxe_options_and_no_address() {
        let out = run(&pxe(MessageType::Discover, 0), Mode::Proxy, Port::Dhcp, &mut FakePool(vec![]));
        let (reply, dest) = out.reply.unwrap();
        assert_eq!(dest, Dest::Broadcast);
        assert_eq!(reply.message_type(), Some(MessageType::Offer));
        assert_eq!(reply.yiaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(reply.siaddr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(reply.file, b"undionly.kpxe");
        assert_eq!(reply.get(opt::BOOTFILE), Some(&b"undionly.kpxe"[..]));
        assert_eq!(reply.get(opt::VENDOR_CLASS), Some(&b"PXEClient"[..]));
        assert_eq!(reply.get(opt::VENDOR_SPECIFIC), Some(&[6, 1, 8, 255][..]));
        assert_eq!(reply.get(opt::TFTP_SERVER), Some(&b"10.0.0.1"[..]));
        assert_eq!(reply.get(opt::CLIENT_UUID), Some(&[0u8; 17][..]));
        assert!(reply.get(opt::LEASE_TIME).is_none());
        // A plain client is not answered by a proxy.
        let plain = Packet::request(MessageType::Discover, 1, [2; 6]);
        assert!(run(&plain, Mode::Proxy, Port::Dhcp, &mut FakePool(vec![])).reply.is_none());
    }

    #[test]
    fn proxy_answers_a_request_only_client_but_not_a_request_to_another_server() {
        let mut req = pxe(MessageType::Request, 9);
        req.set(opt::REQUESTED_IP, vec![192, 168, 1, 50]);
        let (ack, dest) = run(&req, Mode::Proxy, Port::Dhcp, &mut FakePool(vec![])).reply.unwrap();
        assert_eq!(dest, Dest::Broadcast);
        assert_eq!(ack.message_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(ack.get(opt::BOOTFILE), Some(&b"ipxe.efi"[..]));
        assert_eq!(ack.get(opt::SERVER_ID), Some(&[10, 0, 0, 1][..]));
        req.set(opt::SERVER_ID, vec![192, 168, 1, 1]);
        assert!(run(&req, Mode::Proxy, Port::Dhcp, &mut FakePool(vec![])).reply.is_none());
        // A plain client's REQUEST is never the proxy's.
        let mut plain = Packet::request(MessageType::Request, 2, [2; 6]);
        plain.set(opt::REQUESTED_IP, vec![192, 168, 1, 51]);
        assert!(run(&plain, Mode::Proxy, Port::Dhcp, &mut FakePool(vec![])).reply.is_none());
    }

    #[test]
    fn port_4011_request_gets_an_ack_back_to_its_source() {
        let mut req = pxe(MessageType::Request, 7);
        req.ciaddr = Ipv4Addr::new(192, 168, 1, 50);
        let (reply, dest) = run(&req, Mode::Proxy, Port::Pxe, &mut FakePool(vec![])).reply.unwrap();
        assert_eq!(dest, Dest::Source);
        assert_eq!(reply.message_type(), Some(MessageType::Ack));
        assert_eq!(reply.file, b"ipxe.efi");
    }

    #[test]
    fn full_mode_offer_request_ack() {
        let mut pool = FakePool(vec![]);
        let (offer, _) = run(&pxe(MessageType::Discover, 0), Mode::Full, Port::Dhcp, &mut pool).reply.unwrap();
        assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(offer.get(opt::LEASE_TIME), Some(&3600u32.to_be_bytes()[..]));
        assert_eq!(offer.get(opt::SUBNET_MASK), Some(&[255, 255, 255, 0][..]));
        assert_eq!(offer.options[0], (opt::MESSAGE_TYPE, vec![2]));
        let mut req = pxe(MessageType::Request, 0);
        req.set(opt::SERVER_ID, vec![10, 0, 0, 1]);
        req.set(opt::REQUESTED_IP, vec![10, 0, 0, 100]);
        let (ack, _) = run(&req, Mode::Full, Port::Dhcp, &mut pool).reply.unwrap();
        assert_eq!(ack.message_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(ack.file, b"undionly.kpxe");
        // The client chose another server: silence, offer released.
        req.set(opt::SERVER_ID, vec![10, 0, 0, 2]);
        assert!(run(&req, Mode::Full, Port::Dhcp, &mut pool).reply.is_none());
    }

    #[test]
    fn init_reboot_acks_own_lease_and_naks_a_taken_one() {
        let mut pool = FakePool(vec![([2, 0, 0, 0, 0, 9], Ipv4Addr::new(10, 0, 0, 120)), ([3; 6], Ipv4Addr::new(10, 0, 0, 121))]);
        let mut req = Packet::request(MessageType::Request, 3, [2, 0, 0, 0, 0, 9]);
        req.set(opt::REQUESTED_IP, vec![10, 0, 0, 120]);
        let (ack, _) = run(&req, Mode::Full, Port::Dhcp, &mut pool).reply.unwrap();
        assert_eq!(ack.message_type(), Some(MessageType::Ack));
        assert!(ack.get(opt::BOOTFILE).is_none(), "plain client: no boot options");
        req.set(opt::REQUESTED_IP, vec![10, 0, 0, 121]);
        let (nak, dest) = run(&req, Mode::Full, Port::Dhcp, &mut pool).reply.unwrap();
        assert_eq!(nak.message_type(), Some(MessageType::Nak));
        assert_eq!(dest, Dest::Broadcast);
    }

    #[test]
    fn ipxe_and_http_boot_get_urls() {
        let mut ipxe = pxe(MessageType::Discover, 0);
        ipxe.set(opt::IPXE_ENCAP, vec![19, 1, 1]);
        let (offer, _) = run(&ipxe, Mode::Proxy, Port::Dhcp, &mut FakePool(vec![])).reply.unwrap();
        assert_eq!(offer.file, b"http://10.0.0.1:80/boot.ipxe");
        assert!(offer.get(opt::TFTP_SERVER).is_none());
        let mut http = Packet::request(MessageType::Discover, 1, [2; 6]);
        http.set(opt::VENDOR_CLASS, b"HTTPClient:Arch:00016:UNDI:003001".to_vec());
        http.set(opt::CLIENT_ARCH, vec![0, 16]);
        let (offer, _) = run(&http, Mode::Full, Port::Dhcp, &mut FakePool(vec![])).reply.unwrap();
        assert_eq!(offer.file, b"http://10.0.0.1:80/ipxe/ipxe.efi");
        assert_eq!(offer.get(opt::VENDOR_CLASS), Some(&b"HTTPClient"[..]));
        assert!(offer.get(opt::VENDOR_SPECIFIC).is_none());
    }

    #[test]
    fn silent_and_own_packets() {
        let req = pxe(MessageType::Discover, 0);
        assert!(run(&req, Mode::Silent, Port::Dhcp, &mut FakePool(vec![])).reply.is_none());
        assert!(run(&req, Mode::Off, Port::Pxe, &mut FakePool(vec![])).reply.is_none());
        let own = Packet::request(MessageType::Discover, 1, [2, 0, 0, 0, 0, 1]);
        assert!(run(&own, Mode::Full, Port::Dhcp, &mut FakePool(vec![])).reply.is_none());
    }
}
