use viver::image::{chunks, manifest::{Chunks, Manifest}, verify};
fn main() {
    let path = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let base = Manifest::load(&path.with_extension("toml")).unwrap();
    let inits: Vec<String> = ["/sbin/init", "/lib/systemd/systemd"].iter().map(|s| s.to_string()).collect();
    for kib in [16u64, 64, 128, 256, 512, 1024, 4096] {
        let t = std::time::Instant::now();
        let d = chunks::digest(&mut std::fs::File::open(&path).unwrap(), kib << 10).unwrap();
        let hash_s = t.elapsed().as_secs_f64();
        let m = Manifest { chunks: Some(Chunks::from_digest(&d)), ..base.clone() };
        let toml = m.to_toml();
        let t = std::time::Instant::now();
        let parsed = Manifest::parse(&toml, "x").unwrap();
        let parse_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = std::time::Instant::now();
        let r = verify::chunks(&path, Some(&parsed), verify::Level::Boot, &inits).unwrap();
        let check_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!("chunk {kib} KiB: hash {hash_s:.2} s, manifest {} KiB (parse {parse_ms:.1} ms), boot check {} chunks {:.1} MiB in {check_ms:.0} ms; files {}", toml.len() >> 10, r.chunks_verified, r.bytes_verified as f64 / 1048576.0, r.files.len());
        if kib == 256 { println!("{:?}", r.files); println!("{:?}", r.notes); }
    }
}
