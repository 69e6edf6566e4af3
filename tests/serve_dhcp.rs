//! DHCP answers of `viver serve`, packet by packet: a test client in its own network
//! namespace (joined by veth to the server's bridge) sends crafted DISCOVER, REQUEST
//! and INFORM packets like BIOS PXE, UEFI PXE, UEFI HTTP boot and plain clients do.

mod net;

use net::{fixture, scratch, serve_args, viver, wait_report, Netns, Process};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use viver::net::dhcp::wire::{opt, MessageType, Packet};

struct Segment {
    server_ns: Netns,
    client_ns: Netns,
}

fn segment() -> Segment {
    let server_ns = Netns::new("vds");
    server_ns.bridge("br0", "10.77.0.1/24");
    let client_ns = Netns::new("vdc");
    server_ns.veth_to("vc0", Some("br0"), &client_ns, "eth0", Some("10.77.0.200/24"));
    Segment { server_ns, client_ns }
}

fn start(seg: &Segment, dir: &std::path::Path, extra: &[&str]) -> (Process, serde_json::Value) {
    let f = fixture(dir);
    let state = dir.join("state");
    // A report of an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(state.join("serve.json"));
    let mut cmd = seg.server_ns.command(viver());
    cmd.args(serve_args(&f, &state)).args(["--interface", "br0", "--survey-wait", "0.5"]).args(extra);
    let mut p = Process::spawn(cmd, &dir.join(format!("serve-{}.log", Instant::now().elapsed().as_nanos())));
    let report = wait_report(&state, &mut p, Duration::from_secs(20));
    p.wait_for_log("serve: ready", Duration::from_secs(10));
    (p, report)
}

/// Sends `packet` from the client namespace (port 68 on eth0) to `to` and returns
/// every reply for 1.5 s.
fn exchange(seg: &Segment, packet: Packet, to: SocketAddr) -> Vec<Packet> {
    seg.client_ns.run(move || {
        let sock = viver::net::iface::udp_socket(Ipv4Addr::UNSPECIFIED, 68, Some("eth0")).unwrap();
        sock.send_to(&packet.encode(), to).unwrap();
        collect(&sock, packet.xid)
    })
}

fn collect(sock: &UdpSocket, xid: u32) -> Vec<Packet> {
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(p) = Packet::parse(&buf[..n]) {
                if p.xid == xid && p.op == 2 {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn broadcast() -> SocketAddr {
    "255.255.255.255:67".parse().unwrap()
}

fn pxe(kind: MessageType, xid: u32, mac: [u8; 6], arch: u16) -> Packet {
    let mut p = Packet::request(kind, xid, mac);
    let class = if arch == 16 { "HTTPClient" } else { "PXEClient" };
    p.set(opt::VENDOR_CLASS, format!("{class}:Arch:{arch:05}:UNDI:003016").into_bytes());
    p.set(opt::CLIENT_ARCH, arch.to_be_bytes().to_vec());
    p.set(opt::CLIENT_UUID, [vec![0u8], vec![0xab; 16]].concat());
    p
}

fn one(replies: Vec<Packet>, what: &str) -> Packet {
    assert_eq!(replies.len(), 1, "{what}: one reply expected, got {replies:?}");
    replies.into_iter().next().unwrap()
}

const MAC1: [u8; 6] = [0x52, 0x54, 0, 0x77, 1, 1];
const MAC2: [u8; 6] = [0x52, 0x54, 0, 0x77, 1, 2];
const MAC3: [u8; 6] = [0x52, 0x54, 0, 0x77, 1, 3];
const SERVER: [u8; 4] = [10, 77, 0, 1];

#[test]
fn full_mode_offers_requests_init_reboot_inform_and_restart() {
    let seg = segment();
    let dir = scratch("dhcp-full");
    let (server, report) = start(&seg, &dir, &["--range", "10.77.0.100-10.77.0.110"]);
    assert_eq!(report["dhcp"]["mode"], "full");
    assert_eq!(report["dhcp"]["range"], serde_json::json!(["10.77.0.100", "10.77.0.110"]));

    // BIOS PXE: address + TFTP boot of undionly.kpxe, every PXE option.
    let offer = one(exchange(&seg, pxe(MessageType::Discover, 11, MAC1, 0), broadcast()), "BIOS DISCOVER");
    assert_eq!(offer.message_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 77, 0, 100));
    assert_eq!(offer.siaddr, Ipv4Addr::from(SERVER));
    assert_eq!(offer.file, b"undionly.kpxe");
    assert_eq!(offer.get(opt::SERVER_ID), Some(&SERVER[..]));
    assert_eq!(offer.get(opt::VENDOR_CLASS), Some(&b"PXEClient"[..]));
    assert_eq!(offer.get(opt::VENDOR_SPECIFIC), Some(&[6, 1, 8, 255][..]));
    assert_eq!(offer.get(opt::TFTP_SERVER), Some(&b"10.77.0.1"[..]));
    assert_eq!(offer.get(opt::BOOTFILE), Some(&b"undionly.kpxe"[..]));
    assert_eq!(offer.get(opt::CLIENT_UUID), Some(&[vec![0u8], vec![0xab; 16]].concat()[..]));
    assert_eq!(offer.get(opt::SUBNET_MASK), Some(&[255, 255, 255, 0][..]));
    assert_eq!(offer.get(opt::LEASE_TIME), Some(&3600u32.to_be_bytes()[..]));

    let mut request = pxe(MessageType::Request, 12, MAC1, 0);
    request.set(opt::SERVER_ID, SERVER.to_vec());
    request.set(opt::REQUESTED_IP, vec![10, 77, 0, 100]);
    let ack = one(exchange(&seg, request, broadcast()), "REQUEST");
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, Ipv4Addr::new(10, 77, 0, 100));
    assert_eq!(ack.file, b"undionly.kpxe");

    // x86-64 UEFI PXE: ipxe.efi.
    let offer = one(exchange(&seg, pxe(MessageType::Discover, 13, MAC2, 7), broadcast()), "UEFI DISCOVER");
    assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 77, 0, 101));
    assert_eq!(offer.get(opt::BOOTFILE), Some(&b"ipxe.efi"[..]));
    // UEFI HTTP boot: a URL and option 60 HTTPClient, no option 43.
    let offer = one(exchange(&seg, pxe(MessageType::Discover, 14, MAC3, 16), broadcast()), "HTTP DISCOVER");
    assert_eq!(offer.file, b"http://10.77.0.1:80/ipxe/ipxe.efi");
    assert_eq!(offer.get(opt::VENDOR_CLASS), Some(&b"HTTPClient"[..]));
    assert_eq!(offer.get(opt::VENDOR_SPECIFIC), None);

    // INIT-REBOOT (REQUEST without server id): its own lease is acked, another's naked.
    let mut reboot = Packet::request(MessageType::Request, 15, MAC1);
    reboot.set(opt::REQUESTED_IP, vec![10, 77, 0, 100]);
    let ack = one(exchange(&seg, reboot, broadcast()), "INIT-REBOOT");
    assert_eq!((ack.message_type(), ack.yiaddr), (Some(MessageType::Ack), Ipv4Addr::new(10, 77, 0, 100)));
    assert_eq!(ack.get(opt::BOOTFILE), None, "a plain REQUEST gets no boot file");
    let mut theft = Packet::request(MessageType::Request, 16, MAC3);
    theft.set(opt::REQUESTED_IP, vec![10, 77, 0, 100]);
    let nak = one(exchange(&seg, theft, broadcast()), "INIT-REBOOT of a taken address");
    assert_eq!(nak.message_type(), Some(MessageType::Nak));

    // INFORM from a configured client: an ACK with boot options, unicast, no address.
    let mut inform = pxe(MessageType::Inform, 17, MAC2, 0);
    inform.ciaddr = Ipv4Addr::new(10, 77, 0, 200);
    inform.flags = 0;
    let ack = one(exchange(&seg, inform, "10.77.0.1:67".parse().unwrap()), "INFORM");
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.get(opt::BOOTFILE), Some(&b"undionly.kpxe"[..]));
    assert!(server.log_text().contains("ACK to INFORM of 52:54:00:77:01:02"), "{}", server.log_text());

    // The lease survives a restart of the server.
    drop(server);
    let (_again, _) = start(&seg, &dir, &["--range", "10.77.0.100-10.77.0.110"]);
    let offer = one(exchange(&seg, pxe(MessageType::Discover, 18, MAC1, 0), broadcast()), "DISCOVER after restart");
    assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 77, 0, 100));
    let offer = one(exchange(&seg, Packet::request(MessageType::Discover, 19, [0x52, 0x54, 0, 0x77, 1, 9]), broadcast()), "plain");
    assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 77, 0, 103), "the next free address (101 and 102 are still held for their offers)");
    assert_eq!(offer.get(opt::BOOTFILE), None);
}

#[test]
fn full_mode_skips_an_address_that_answers_arp() {
    let seg = segment();
    let dir = scratch("dhcp-arp");
    // 10.77.0.200 is the test client's own address: first in this range.
    let (_server, _) = start(&seg, &dir, &["--range", "10.77.0.200-10.77.0.201", "--dhcp", "full"]);
    let offer = one(exchange(&seg, pxe(MessageType::Discover, 21, MAC1, 0), broadcast()), "DISCOVER");
    assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 77, 0, 201));
}

#[test]
fn proxy_mode_gives_boot_information_only() {
    let seg = segment();
    let dir = scratch("dhcp-proxy");
    let (_server, report) = start(&seg, &dir, &["--dhcp", "proxy"]);
    assert_eq!(report["dhcp"]["mode"], "proxy");
    let offer = one(exchange(&seg, pxe(MessageType::Discover, 31, MAC1, 0), broadcast()), "proxy DISCOVER");
    assert_eq!(offer.message_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(offer.file, b"undionly.kpxe");
    assert_eq!(offer.get(opt::VENDOR_CLASS), Some(&b"PXEClient"[..]));
    assert_eq!(offer.get(opt::VENDOR_SPECIFIC), Some(&[6, 1, 8, 255][..]));
    assert_eq!(offer.get(opt::LEASE_TIME), None);
    assert_eq!(offer.get(opt::SUBNET_MASK), None);
    // A plain client gets nothing from a proxy; nor does a REQUEST to the LAN server.
    assert!(exchange(&seg, Packet::request(MessageType::Discover, 32, MAC2), broadcast()).is_empty());
    let mut request = pxe(MessageType::Request, 33, MAC1, 0);
    request.set(opt::SERVER_ID, vec![10, 77, 0, 254]);
    request.set(opt::REQUESTED_IP, vec![10, 77, 0, 200]);
    assert!(exchange(&seg, request, broadcast()).is_empty());
    // Port 4011: the boot server request of a PXE client with an address.
    let mut request = pxe(MessageType::Request, 34, MAC1, 7);
    request.ciaddr = Ipv4Addr::new(10, 77, 0, 200);
    let ack = one(exchange(&seg, request, "10.77.0.1:4011".parse().unwrap()), "4011 REQUEST");
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.file, b"ipxe.efi");
    // iPXE: the HTTP script, whatever its architecture.
    let mut ipxe = pxe(MessageType::Discover, 35, MAC2, 0);
    ipxe.set(opt::USER_CLASS, b"iPXE".to_vec());
    let offer = one(exchange(&seg, ipxe, broadcast()), "iPXE DISCOVER");
    assert_eq!(offer.file, b"http://10.77.0.1:80/boot.ipxe");
    assert_eq!(offer.get(opt::TFTP_SERVER), None);
    // iPXE recognised by its option 175 alone (no user class), UEFI arch 9.
    let mut ipxe = pxe(MessageType::Discover, 36, MAC3, 9);
    ipxe.set(opt::IPXE_ENCAP, vec![19, 1, 1, 21, 1, 1]);
    let offer = one(exchange(&seg, ipxe, broadcast()), "iPXE (175) DISCOVER");
    assert_eq!(offer.file, b"http://10.77.0.1:80/boot.ipxe");
    let offer = one(exchange(&seg, pxe(MessageType::Discover, 37, MAC3, 9), broadcast()), "UEFI arch 9 DISCOVER");
    assert_eq!((offer.file.as_slice(), offer.get(opt::VENDOR_CLASS)), (&b"ipxe.efi"[..], Some(&b"PXEClient"[..])));
    assert_eq!(offer.get(opt::CLIENT_UUID), Some(&[vec![0u8], vec![0xab; 16]].concat()[..]));
    // UEFI HTTP boot through the proxy: the URL, HTTPClient, no address.
    let offer = one(exchange(&seg, pxe(MessageType::Discover, 38, MAC3, 16), broadcast()), "HTTP DISCOVER");
    assert_eq!(offer.file, b"http://10.77.0.1:80/ipxe/ipxe.efi");
    assert_eq!((offer.yiaddr, offer.get(opt::VENDOR_CLASS)), (Ipv4Addr::UNSPECIFIED, Some(&b"HTTPClient"[..])));
    // A PXE client that only sends DHCPREQUEST (INIT-REBOOT): boot information in an
    // ACK without an address.
    let mut reboot = pxe(MessageType::Request, 39, MAC1, 0);
    reboot.set(opt::REQUESTED_IP, vec![10, 77, 0, 200]);
    let ack = one(exchange(&seg, reboot, broadcast()), "REQUEST-only PXE client");
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.get(opt::BOOTFILE), Some(&b"undionly.kpxe"[..]));
    assert_eq!(ack.get(opt::LEASE_TIME), None);
}

/// Another PXE server on the segment (dnsmasq with a boot file, in its own namespace):
/// `--dhcp auto` stays silent and says why; `--dhcp force` answers as proxyDHCP.
#[test]
fn another_pxe_server_silences_auto_but_not_force() {
    let seg = segment();
    let lan_ns = Netns::new("vdl");
    seg.server_ns.veth_to("vl0", Some("br0"), &lan_ns, "eth0", Some("10.77.0.254/24"));
    let dir = scratch("dhcp-other-pxe");
    let mut dnsmasq = lan_ns.command("dnsmasq");
    dnsmasq.args(["--no-daemon", "--port=0", "--interface=eth0", "--bind-interfaces", "--user=root", "--no-ping"]);
    dnsmasq.args(["--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h", "--dhcp-boot=pxelinux.0"]);
    dnsmasq.arg(format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()));
    dnsmasq.arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
    let mut dnsmasq = Process::spawn(dnsmasq, &dir.join("dnsmasq.log"));
    dnsmasq.wait_for_log("DHCP, IP range", Duration::from_secs(10));

    let (server, report) = start(&seg, &dir, &[]);
    assert_eq!(report["dhcp"]["mode"], "silent", "{report:#}");
    let reason = report["dhcp"]["reason"].as_str().unwrap();
    assert!(reason.contains("another PXE server") && reason.contains("10.77.0.254") && reason.contains("pxelinux.0"), "{reason}");
    let replies = exchange(&seg, pxe(MessageType::Discover, 41, MAC1, 0), broadcast());
    assert!(replies.iter().all(|r| r.get(opt::SERVER_ID) != Some(&SERVER[..])), "VIVER answered while silent: {replies:?}");
    drop(server);

    let (_server, report) = start(&seg, &dir, &["--dhcp", "force"]);
    assert_eq!(report["dhcp"]["mode"], "proxy", "{report:#}");
    let replies = exchange(&seg, pxe(MessageType::Discover, 42, MAC1, 0), broadcast());
    let ours: Vec<&Packet> = replies.iter().filter(|r| r.get(opt::SERVER_ID) == Some(&SERVER[..])).collect();
    assert_eq!(ours.len(), 1, "{replies:?}");
    assert_eq!((ours[0].yiaddr, ours[0].file.as_slice()), (Ipv4Addr::UNSPECIFIED, &b"undionly.kpxe"[..]));
    assert!(replies.iter().any(|r| r.get(opt::SERVER_ID) == Some(&[10, 77, 0, 254][..])), "dnsmasq answers too: {replies:?}");
}
