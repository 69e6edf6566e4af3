//! Entry points for the fuzz targets (fuzz/fuzz_targets/serve_*.rs, included with #[path]) and the
//! robustness test: hostile bytes through each parser and state machine, which must
//! answer or refuse, never panic.

use std::net::Ipv4Addr;
use std::sync::Arc;
use viver::net::dhcp::wire::Packet;
use viver::serve::dhcp::policy::{handle, AddressPool, BootPlan, Context, Lan, Mode, Port};
use viver::serve::dhcp::probe::observe;

struct AnyPool;
impl AddressPool for AnyPool {
    fn offer(&mut self, mac: [u8; 6], requested: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        requested.or(Some(Ipv4Addr::new(10, 0, 0, mac[5])))
    }
    fn commit(&mut self, mac: [u8; 6], _ip: Ipv4Addr) -> bool {
        mac[0] & 1 == 0
    }
    fn release(&mut self, _mac: [u8; 6], _ip: Ipv4Addr) {}
    fn decline(&mut self, _ip: Ipv4Addr) {}
}

/// A DHCP packet: parsed, answered in every mode on both ports, replies encoded and
/// parsed back, and watched as another server's answer.
pub fn dhcp(data: &[u8]) {
    let Ok(packet) = Packet::parse(data) else {
        return;
    };
    let plan = BootPlan {
        server: Ipv4Addr::new(10, 0, 0, 1),
        http_base: "http://10.0.0.1:80".into(),
        bios_file: Some("undionly.kpxe".into()),
        efi_file: Some("ipxe.efi".into()),
        efi_http_path: Some("/ipxe/ipxe.efi".into()),
        script_path: "/boot.ipxe".into(),
    };
    let lan = Lan { netmask: Ipv4Addr::new(255, 255, 255, 0), router: None, lease_secs: 3600 };
    for mode in [Mode::Full, Mode::Proxy, Mode::Silent] {
        for port in [Port::Dhcp, Port::Pxe] {
            let ctx = Context { mode, plan: &plan, lan: &lan, own_mac: None };
            if let Some((reply, _)) = handle(&packet, port, &ctx, &mut AnyPool).reply {
                let bytes = reply.encode();
                assert!(Packet::parse(&bytes).is_ok(), "own reply must parse");
            }
        }
    }
    let _ = observe(&packet, "10.0.0.2:67".parse().expect("literal"), Ipv4Addr::new(10, 0, 0, 1));
    let _ = packet.encode();
}

/// A TFTP request, then the same bytes as the client's packets of a transfer.
pub fn tftp(data: &[u8]) {
    use viver::serve::tftp::session::{negotiate, Session};
    use viver::serve::tftp::wire::Packet as Tftp;
    let parsed = Tftp::parse(data);
    let options = match &parsed {
        Ok(Tftp::Rrq { options, .. }) => options.clone(),
        _ => Vec::new(),
    };
    let mut session = Session::new(Arc::new(vec![0x5a; 3000]), negotiate(&options, 3000));
    let _ = session.start();
    for chunk in data.chunks(4) {
        if let Ok(p) = Tftp::parse(chunk) {
            let _ = session.on_packet(p);
        } else {
            let _ = session.on_timeout();
        }
    }
    if let Ok(p) = parsed {
        let _ = session.on_packet(p);
    }
}

/// An HTTP request head and its Range header against a few file sizes.
pub fn http(data: &[u8]) {
    use viver::serve::http::request::{head_end, parse_range, Request};
    let _ = head_end(data);
    if let Ok(request) = Request::parse(data) {
        let _ = request.keep_alive();
        let _ = request.has_body();
        for size in [0, 1, 100, u64::MAX] {
            let _ = parse_range(request.header("range"), size);
        }
    }
    for size in [0, 10, u64::MAX] {
        let _ = parse_range(Some(&String::from_utf8_lossy(data)), size);
    }
}
