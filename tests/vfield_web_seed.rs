//! V-FIELD with a plain HTTP server as its only seed: nginx (Debian's) serves the image
//! file and its manifest on a loopback address; three `viver vfield` joiners know only
//! its URL (and each other), get the whole image, and keep it alive after nginx stops:
//! `viver vfield fetch` from a joiner then gives the file byte for byte. nginx's access
//! log says how much the web server sent.

mod net;

use net::{free_port, random_bytes, scratch, viver, Process};
use std::process::Command;
use std::time::{Duration, Instant};

const SIZE: usize = 12 << 20;
const PORT: u16 = 17941;

fn vfield(args: &[&str]) -> Command {
    let mut command = Command::new(viver());
    command.arg("vfield").args(args);
    command
}

/// nginx in the foreground on `addr`, serving `root`, its access log `$body_bytes_sent`.
fn nginx(dir: &std::path::Path, root: &std::path::Path, addr: &str) -> Process {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  log_format sent '$status $body_bytes_sent $http_range';\n  access_log {dir}/access.log sent;\n\
             client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;\n\
             uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;\n\
             server {{ listen {addr}; root {root}; }}\n}}\n",
            dir = dir.display(),
            root = root.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let mut command = Command::new("/usr/sbin/nginx");
    command.arg("-c").arg(&conf).arg("-p").arg(dir);
    Process::spawn(command, &dir.join("nginx.log"))
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn joiners_seeded_by_nginx_alone_keep_the_image_after_nginx_stops() {
    let dir = scratch("vfield-web-seed");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let image = www.join("demo.squashfs");
    let data = random_bytes(SIZE, 0x5eed_0f3b);
    std::fs::write(&image, &data).unwrap();
    // The manifest beside the image, as the kit lays it out (chunk hashes of 256 KiB).
    let meta = viver::vfield::meta::Meta::for_file(&image, 256 << 10).unwrap();
    std::fs::write(www.join("demo.toml"), &meta.text).unwrap();

    let http_addr = format!("127.0.0.41:{}", free_port());
    let web = nginx(&dir, &www, &http_addr);
    wait_listening(&http_addr);
    let url = format!("http://{http_addr}/demo.squashfs");

    let peer = |n: u8| format!("127.0.0.{}:{PORT}", 41 + n);
    let first = Process::spawn(vfield(&["--web-seed", &url, "--listen", &peer(1), "--store", "12"]), &dir.join("joiner1.log"));
    wait_listening(&peer(1));
    let mut joiners = vec![first];
    for n in 2..=3u8 {
        joiners.push(Process::spawn(
            vfield(&["--bootstrap", &peer(1), "--web-seed", &url, "--listen", &peer(n), "--store", "8"]),
            &dir.join(format!("joiner{n}.log")),
        ));
    }
    for j in &mut joiners {
        j.wait_for_log("vfield: store settled", Duration::from_secs(120));
    }
    // The web server stops: the joiners hold 28 MiB of a 12 MiB image between them.
    drop(web);
    let access = std::fs::read_to_string(dir.join("access.log")).unwrap();
    let sent: u64 = access.lines().filter_map(|l| l.split(' ').nth(1)?.parse::<u64>().ok()).sum();
    let ranged = access.lines().filter(|l| l.starts_with("206 ")).count();
    eprintln!("nginx sent {:.2} images in {ranged} range requests for 3 joiners", sent as f64 / SIZE as f64);
    assert!(ranged > 0, "no Range request reached nginx:\n{access}");
    assert!(sent < 3 * SIZE as u64, "nginx sent {sent} bytes for a {SIZE}-byte image: the joiners did not share");

    let out = dir.join("fetched.bin");
    let fetch = vfield(&["fetch", "--bootstrap", &peer(3), "-o", out.to_str().unwrap(), "--timeout", "120"]).output().unwrap();
    assert!(fetch.status.success(), "fetch: {}{}", String::from_utf8_lossy(&fetch.stdout), String::from_utf8_lossy(&fetch.stderr));
    assert!(std::fs::read(&out).unwrap() == data, "the fetched file differs from the image");
}
