//! Who else answers DHCP on the segment: VIVER sends a PXE-looking DHCPDISCOVER from
//! its own interface and listens (also passively, all the time) on port 68 for offers
//! and acks of other servers. The rules that turn what was seen into a [`Mode`] live
//! in [`decide`] and [`tighten`].

use super::policy::Mode;
use crate::net::dhcp::wire::{opt, MessageType, Packet};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// What the operator asked for with `--dhcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    /// Survey the segment: full, proxy or silent by what answers.
    Auto,
    /// Like auto, but answer PXE clients even when another PXE server does.
    Force,
    Full,
    Proxy,
    Off,
}

impl Setting {
    /// `auto`, `force`, `full`, `proxy`, `off` (`--dhcp`, `viver.dhcp=`).
    pub fn from_word(word: &str) -> Option<Setting> {
        match word {
            "auto" => Some(Setting::Auto),
            "force" => Some(Setting::Force),
            "full" => Some(Setting::Full),
            "proxy" => Some(Setting::Proxy),
            "off" => Some(Setting::Off),
            _ => None,
        }
    }
}

/// Another server's answer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Seen {
    pub server: Ipv4Addr,
    /// It gives addresses (yiaddr set).
    pub addresses: bool,
    /// It answers PXE clients (option 60 PXEClient/HTTPClient, or a boot file).
    pub pxe: bool,
    pub boot_file: String,
    pub message: String,
}

/// An offer or ack from a server other than `own` (None for anything else).
pub fn observe(p: &Packet, source: SocketAddr, own: Ipv4Addr) -> Option<Seen> {
    if p.op != crate::net::dhcp::wire::BOOTREPLY {
        return None;
    }
    let kind = p.message_type()?;
    if !matches!(kind, MessageType::Offer | MessageType::Ack) {
        return None;
    }
    let server = p.ip_option(opt::SERVER_ID).unwrap_or(match source {
        SocketAddr::V4(v4) => *v4.ip(),
        SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    });
    if server == own {
        return None;
    }
    let vendor = p.get(opt::VENDOR_CLASS).unwrap_or_default();
    let file = p.get(opt::BOOTFILE).map(<[u8]>::to_vec).unwrap_or_else(|| p.file.clone());
    // dnsmasq and others send option 67 with its C string's NUL.
    let end = file.iter().position(|&b| b == 0).unwrap_or(file.len());
    let boot_file = String::from_utf8_lossy(&file[..end]).into_owned();
    let pxe = vendor.starts_with(b"PXEClient") || vendor.starts_with(b"HTTPClient") || !boot_file.is_empty();
    Some(Seen { server, addresses: p.yiaddr != Ipv4Addr::UNSPECIFIED, pxe, boot_file, message: format!("{kind:?}") })
}

/// The mode at start from the setting and the survey, and the reason in words.
pub fn decide(setting: Setting, seen: &[Seen]) -> (Mode, String) {
    let describe = |s: &Seen| {
        if s.pxe {
            format!("{} (boot file {:?})", s.server, s.boot_file)
        } else {
            s.server.to_string()
        }
    };
    let pxe: Vec<String> = seen.iter().filter(|s| s.pxe).map(describe).collect();
    let dhcp: Vec<String> = seen.iter().filter(|s| s.addresses).map(describe).collect();
    match setting {
        Setting::Off => (Mode::Off, "--dhcp off".into()),
        Setting::Full if dhcp.is_empty() => (Mode::Full, "--dhcp full".into()),
        Setting::Full => (Mode::Full, format!("--dhcp full although DHCP server {} answers on the segment", dhcp.join(", "))),
        Setting::Proxy => (Mode::Proxy, "--dhcp proxy".into()),
        Setting::Auto if !pxe.is_empty() => (
            Mode::Silent,
            format!("another PXE server answers on this segment: {}; VIVER stays silent (--dhcp force to answer anyway)", pxe.join(", ")),
        ),
        Setting::Auto | Setting::Force if !dhcp.is_empty() => {
            (Mode::Proxy, format!("DHCP server {} gives addresses on this segment: proxyDHCP only", dhcp.join(", ")))
        }
        Setting::Auto | Setting::Force => {
            let mut reason = "no DHCP server answered the survey: VIVER gives addresses".to_string();
            if !pxe.is_empty() {
                reason.push_str(&format!(" (--dhcp force: PXE server {} ignored)", pxe.join(", ")));
            }
            (Mode::Full, reason)
        }
    }
}

/// At run time the mode only gets more careful: full becomes proxy when a DHCP server
/// appears, full or proxy becomes silent when (in auto) another PXE server appears.
/// Returns the new mode and reason when it changes.
pub fn tighten(setting: Setting, current: Mode, seen: &Seen) -> Option<(Mode, String)> {
    if !matches!(setting, Setting::Auto | Setting::Force) {
        return None;
    }
    if setting == Setting::Auto && seen.pxe && matches!(current, Mode::Full | Mode::Proxy) {
        return Some((
            Mode::Silent,
            format!("PXE server {} (boot file {:?}) appeared on the segment: VIVER is silent now", seen.server, seen.boot_file),
        ));
    }
    if seen.addresses && current == Mode::Full {
        return Some((Mode::Proxy, format!("DHCP server {} appeared on the segment: proxyDHCP only now", seen.server)));
    }
    None
}

/// The DISCOVER of the survey: looks like a BIOS PXE client, so PXE servers answer too.
pub fn survey_discover(xid: u32, mac: [u8; 6]) -> Packet {
    let mut p = Packet::request(MessageType::Discover, xid, mac);
    p.set(opt::PARAMETER_LIST, vec![1, 3, 6, 43, 54, 60, 66, 67]);
    p.set(opt::VENDOR_CLASS, b"PXEClient:Arch:00000:UNDI:002001".to_vec());
    p.set(opt::CLIENT_ARCH, vec![0, 0]);
    p.set(opt::CLIENT_NDI, vec![1, 2, 1]);
    let mut uuid = vec![0u8];
    uuid.extend_from_slice(&[0x56; 10]);
    uuid.extend_from_slice(&mac);
    p.set(opt::CLIENT_UUID, uuid);
    p
}

/// Sends the survey DISCOVER on `socket` (port 68 on the interface) to `target` and
/// collects other servers' answers for `wait`.
pub fn survey(socket: &UdpSocket, target: SocketAddr, mac: [u8; 6], own: Ipv4Addr, wait: Duration) -> Vec<Seen> {
    let xid = (std::process::id() << 8) ^ (Instant::now().elapsed().subsec_nanos());
    let discover = survey_discover(xid, mac).encode();
    let mut seen: Vec<Seen> = Vec::new();
    if let Err(e) = socket.send_to(&discover, target) {
        log::warn!("serve: DHCP survey: cannot send DISCOVER: {e}");
    }
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    let mut resent = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // One resend halfway, as a real client would: a lost packet must not turn
        // VIVER into the segment's DHCP server.
        if !resent && left < wait / 2 {
            resent = true;
            let _ = socket.send_to(&discover, target);
        }
        let _ = socket.set_read_timeout(Some(left.min(wait / 4).max(Duration::from_millis(10))));
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Ok(p) = Packet::parse(&buf[..n]) {
                    if let Some(s) = observe(&p, from, own) {
                        if !seen.iter().any(|x| x.server == s.server && x.pxe == s.pxe && x.addresses == s.addresses) {
                            log::info!(
                                "serve: DHCP survey: {} from {} (addresses: {}, PXE: {}{})",
                                s.message,
                                s.server,
                                s.addresses,
                                s.pxe,
                                if s.pxe { format!(", boot file {:?}", s.boot_file) } else { String::new() }
                            );
                            seen.push(s);
                        }
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => {
                log::warn!("serve: DHCP survey: {e}");
                break;
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(addresses: bool, pxe: bool) -> Seen {
        Seen {
            server: Ipv4Addr::new(10, 0, 0, 2),
            addresses,
            pxe,
            boot_file: if pxe { "pxelinux.0".into() } else { String::new() },
            message: "Offer".into(),
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(Setting::Auto, &[]).0, Mode::Full);
        assert_eq!(decide(Setting::Auto, &[seen(true, false)]).0, Mode::Proxy);
        let (mode, why) = decide(Setting::Auto, &[seen(true, false), seen(true, true)]);
        assert_eq!(mode, Mode::Silent);
        assert!(why.contains("another PXE server") && why.contains("pxelinux.0"), "{why}");
        assert_eq!(decide(Setting::Force, &[seen(true, true)]).0, Mode::Proxy);
        assert_eq!(decide(Setting::Force, &[seen(false, true)]).0, Mode::Full);
        assert_eq!(decide(Setting::Proxy, &[]).0, Mode::Proxy);
        assert_eq!(decide(Setting::Off, &[seen(true, true)]).0, Mode::Off);
        assert!(decide(Setting::Full, &[seen(true, false)]).1.contains("although"));
    }

    #[test]
    fn only_tightens() {
        assert_eq!(tighten(Setting::Auto, Mode::Full, &seen(true, false)).map(|t| t.0), Some(Mode::Proxy));
        assert_eq!(tighten(Setting::Auto, Mode::Proxy, &seen(true, false)), None);
        assert_eq!(tighten(Setting::Auto, Mode::Proxy, &seen(false, true)).map(|t| t.0), Some(Mode::Silent));
        assert_eq!(tighten(Setting::Force, Mode::Proxy, &seen(false, true)), None);
        assert_eq!(tighten(Setting::Full, Mode::Full, &seen(true, true)), None);
    }

    #[test]
    fn observes_other_servers_only() {
        let req = Packet::request(MessageType::Discover, 1, [2; 6]);
        let mut offer = req.reply(MessageType::Offer);
        offer.yiaddr = Ipv4Addr::new(10, 0, 0, 50);
        offer.set(opt::SERVER_ID, vec![10, 0, 0, 2]);
        let from: SocketAddr = "10.0.0.2:67".parse().unwrap();
        let s = observe(&offer, from, Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        assert!(s.addresses && !s.pxe);
        assert!(observe(&offer, from, Ipv4Addr::new(10, 0, 0, 2)).is_none());
        offer.file = b"undionly.kpxe".to_vec();
        assert!(observe(&offer, from, Ipv4Addr::new(10, 0, 0, 1)).unwrap().pxe);
        offer.set(opt::BOOTFILE, b"pxelinux.0\0".to_vec());
        assert_eq!(observe(&offer, from, Ipv4Addr::new(10, 0, 0, 1)).unwrap().boot_file, "pxelinux.0");
        assert!(observe(&req, from, Ipv4Addr::new(10, 0, 0, 1)).is_none());
    }
}
