//! `viver serve --dhcp off` on 127.0.0.1 with unprivileged ports, against real
//! clients: curl for TFTP (blksize) and HTTP (ranges, HEAD, keep-alive), and a small
//! TFTP client here for windowsize (curl has no such option) and exact ERROR codes.

mod net;

use net::{fixture, free_port, scratch, serve_args, viver, wait_report, Process};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

struct Server {
    _process: Process,
    http: u16,
    tftp: u16,
    fixture: net::Fixture,
}

fn start(name: &str) -> Server {
    let dir = scratch(name);
    let f = fixture(&dir);
    let (http, tftp) = (free_port(), free_port());
    let state = dir.join("state");
    let mut cmd = Command::new(viver());
    cmd.args(serve_args(&f, &state)).args([
        "--dhcp",
        "off",
        "--address",
        "127.0.0.1",
        "--http-port",
        &http.to_string(),
        "--tftp-port",
        &tftp.to_string(),
        "--http-timeout",
        "1",
        "--cmdline",
        "console=ttyS0 quiet",
    ]);
    let mut process = Process::spawn(cmd, &dir.join("serve.log"));
    let report = wait_report(&state, &mut process, Duration::from_secs(20));
    assert_eq!(report["dhcp"]["mode"], "off");
    assert_eq!(report["dhcp"]["reason"], "--dhcp off");
    assert_eq!(report["http"], format!("http://127.0.0.1:{http}"));
    Server { _process: process, http, tftp, fixture: f }
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl").args(["-sS", "--max-time", "30"]).args(args).output().expect("curl (apt-get install curl)")
}

#[test]
fn tftp_curl_gets_each_ipxe_binary_byte_for_byte() {
    let s = start("tftp-curl");
    let out_dir = s.fixture.dir.join("got");
    std::fs::create_dir_all(&out_dir).unwrap();
    for name in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
        let want = std::fs::read(s.fixture.ipxe_dir.join(name)).unwrap();
        for blksize in ["512", "1456", "8192"] {
            let out = out_dir.join(format!("{name}.{blksize}"));
            let started = Instant::now();
            let r = curl(&["--tftp-blksize", blksize, &format!("tftp://127.0.0.1:{}/{name}", s.tftp), "-o", out.to_str().unwrap()]);
            assert!(r.status.success(), "curl tftp {name} blksize {blksize}: {}", String::from_utf8_lossy(&r.stderr));
            let got = std::fs::read(&out).unwrap();
            assert!(got == want, "{name} blksize {blksize}: {} bytes, want {}", got.len(), want.len());
            if name == "ipxe.efi" {
                eprintln!("TFTP curl {name} (1 MiB) blksize {blksize}: {:.0?}", started.elapsed());
            }
        }
    }
    // The plain RFC 1350 path (no options at all).
    let out = out_dir.join("plain");
    let r = curl(&["--tftp-no-options", &format!("tftp://127.0.0.1:{}/undionly.kpxe", s.tftp), "-o", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(std::fs::read(&out).unwrap() == std::fs::read(s.fixture.ipxe_dir.join("undionly.kpxe")).unwrap());
    // Anything else is refused.
    let r = curl(&[&format!("tftp://127.0.0.1:{}/etc/passwd", s.tftp), "-o", "/dev/null"]);
    // curl's exit code 68 is CURLE_TFTP_NOTFOUND (its message text is a curl quirk).
    assert_eq!(r.status.code(), Some(68), "{}", String::from_utf8_lossy(&r.stderr));
}

/// RRQ with options; reads the whole file acking each window's last block; returns
/// the bytes and the time.
fn tftp_get(port: u16, name: &str, blksize: usize, window: u16) -> (Vec<u8>, Duration) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rrq = vec![0, 1];
    for field in [name, "octet", "blksize", &blksize.to_string(), "windowsize", &window.to_string(), "tsize", "0"] {
        rrq.extend_from_slice(field.as_bytes());
        rrq.push(0);
    }
    let started = Instant::now();
    sock.send_to(&rrq, ("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 70000];
    let (n, server) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..2], &[0, 6], "OACK expected: {:?}", &buf[..n.min(40)]);
    let oack = String::from_utf8_lossy(&buf[2..n]).replace('\0', " ");
    assert!(oack.contains(&format!("windowsize {window}")) && oack.contains(&format!("blksize {blksize}")), "{oack}");
    sock.send_to(&[0, 4, 0, 0], server).unwrap();
    let mut data = Vec::new();
    let mut expected: u16 = 1;
    let mut in_window = 0;
    loop {
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..2], &[0, 3]);
        let block = u16::from_be_bytes([buf[2], buf[3]]);
        assert_eq!(block, expected, "blocks in order on loopback");
        data.extend_from_slice(&buf[4..n]);
        in_window += 1;
        let last = n - 4 < blksize;
        if in_window == window || last {
            sock.send_to(&[0, 4, buf[2], buf[3]], server).unwrap();
            in_window = 0;
        }
        if last {
            return (data, started.elapsed());
        }
        expected = expected.wrapping_add(1);
    }
}

#[test]
fn tftp_windowsize_transfers_and_errors() {
    let s = start("tftp-window");
    let want = std::fs::read(s.fixture.ipxe_dir.join("ipxe.efi")).unwrap();
    let (got1, t1) = tftp_get(s.tftp, "ipxe.efi", 1456, 1);
    let (got16, t16) = tftp_get(s.tftp, "/ipxe.efi", 1456, 16);
    assert!(got1 == want && got16 == want);
    eprintln!("TFTP 1 MiB blksize 1456 on loopback: windowsize 1 {t1:.0?}, windowsize 16 {t16:.0?}");

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let error_of = |packet: &[u8]| {
        sock.send_to(packet, ("127.0.0.1", s.tftp)).unwrap();
        let mut buf = [0u8; 600];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..2], &[0, 5], "ERROR expected");
        (u16::from_be_bytes([buf[2], buf[3]]), String::from_utf8_lossy(&buf[4..n - 1]).into_owned())
    };
    assert_eq!(error_of(b"\x00\x02ipxe.efi\x00octet\x00"), (2, "read-only server".into()));
    assert_eq!(error_of(b"\x00\x01../../etc/passwd\x00octet\x00"), (2, "access violation".into()));
    assert_eq!(error_of(b"\x00\x01/etc/passwd\x00octet\x00"), (1, "file not found".into()));
    assert_eq!(error_of(b"\x00\x01ipxe.efi\x00mail\x00"), (4, "only octet mode".into()));
    assert_eq!(error_of(b"\x00\x01ipxe.efi"), (4, "malformed request".into()));
    assert_eq!(error_of(b"\x00\x04\x00\x01"), (5, "no transfer with this TID".into()));
}

#[test]
fn http_curl_full_range_head_keepalive_and_refusals() {
    let s = start("http-curl");
    let base = format!("http://127.0.0.1:{}", s.http);
    let image = std::fs::read(&s.fixture.image).unwrap();
    let out = s.fixture.dir.join("image.got");
    let started = Instant::now();
    let r = curl(&["-f", &format!("{base}/image/demo.squashfs"), "-o", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(std::fs::read(&out).unwrap() == image);
    eprintln!("HTTP 3 MB image over loopback: {:.0?}", started.elapsed());

    for (url, file) in [("/vmlinuz", &s.fixture.kernel), ("/initrd.img", &s.fixture.initrd), ("/image/demo.toml", &s.fixture.manifest)] {
        let r = curl(&["-f", &format!("{base}{url}")]);
        assert!(r.status.success() && r.stdout == std::fs::read(file).unwrap(), "{url}");
    }
    let r = curl(&["-f", &format!("{base}/ipxe/ipxe.efi")]);
    assert!(r.stdout == std::fs::read(s.fixture.ipxe_dir.join("ipxe.efi")).unwrap());

    // Range: 206 with exactly those bytes.
    let r = curl(&["-f", "-D", "-", "-r", "1000-1999", &format!("{base}/image/demo.squashfs")]);
    let text = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{text:.200}");
    assert!(text.contains("Content-Range: bytes 1000-1999/3000000\r\n") && text.contains("Content-Length: 1000\r\n"));
    let body_at = r.stdout.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(r.stdout[body_at..] == image[1000..2000]);
    let r = curl(&["-r", "-10", &format!("{base}/image/demo.squashfs")]);
    assert!(r.stdout == image[image.len() - 10..]);
    // Beyond the end: 416.
    let r = curl(&["-o", "/dev/null", "-w", "%{http_code}", "-r", "5000000-", &format!("{base}/image/demo.squashfs")]);
    assert_eq!(String::from_utf8_lossy(&r.stdout), "416");
    // HEAD: the length, no body.
    let r = curl(&["-I", &format!("{base}/vmlinuz")]);
    let text = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("Content-Length: 300001\r\n"), "{text}");
    // Keep-alive: two requests on one connection.
    let r = curl(&["-v", "-o", "/dev/null", "-o", "/dev/null", &format!("{base}/boot.ipxe"), &format!("{base}/image/demo.toml")]);
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(err.contains("Re-using existing connection") || err.contains("Reusing existing connection"), "{err}");
    // The iPXE script.
    let r = curl(&["-f", &format!("{base}/boot.ipxe")]);
    let script = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(script.contains(&format!("kernel {base}/vmlinuz initrd=initrd.img viver.net={base}/image/demo.squashfs BOOTIF=01-${{netX/mac:hexhyp}} console=ttyS0 quiet\n")), "{script}");
    assert!(script.contains(&format!("initrd {base}/initrd.img\n")));
    // Refusals.
    let code = |args: &[&str]| {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&curl(&all).stdout).into_owned()
    };
    assert_eq!(code(&[&format!("{base}/etc/passwd")]), "404");
    assert_eq!(code(&[&format!("{base}/image/../vmlinuz"), "--path-as-is"]), "404");
    assert_eq!(code(&["-X", "DELETE", &format!("{base}/vmlinuz")]), "405");
    assert_eq!(code(&["-d", "x=1", &format!("{base}/vmlinuz")]), "413");
    assert_eq!(code(&["-H", &format!("X-Big: {}", "a".repeat(9000)), &format!("{base}/vmlinuz")]), "431");
}

#[test]
fn http_slow_request_head_is_cut_off() {
    let s = start("http-slow");
    let mut stream = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    stream.write_all(b"GET /vmlinuz HT").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");
    // An idle keep-alive connection is closed without an answer.
    let mut idle = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    assert_eq!(idle.read_to_end(&mut buf).unwrap(), 0);
}
