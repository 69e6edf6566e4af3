//! V-FIELD with real processes on loopback addresses (127.0.0.x): a seed and 20 joiners
//! (`viver vfield`), the seed killed half way, every joiner completes from the others,
//! and `viver vfield fetch` from a joiner gives the file byte for byte. Uploads are
//! limited so that "half way" exists on a loopback that would otherwise move the whole
//! file before the second joiner starts.

mod net;

use net::{random_bytes, scratch, viver, Process};
use sha2::{Digest, Sha256};
use std::process::Command;
use std::time::{Duration, Instant};

const PORT: u16 = 17881;
const JOINERS: u8 = 20;
const SIZE: usize = 24 << 20;

fn vfield(args: &[&str]) -> Command {
    let mut command = Command::new(viver());
    command.arg("vfield").args(args);
    command
}

fn status(bootstrap: &str) -> Option<serde_json::Value> {
    let out = vfield(&["status", "--bootstrap", bootstrap, "--json"]).output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn twenty_joiners_finish_after_the_seed_is_killed_and_a_joiner_serves_the_file_byte_for_byte() {
    let dir = scratch("vfield-loopback");
    let file = dir.join("image.bin");
    let data = random_bytes(SIZE, 0x9e37_79b9_7f4a_7c15);
    std::fs::write(&file, &data).unwrap();
    let seed_addr = format!("127.0.0.1:{PORT}");
    let seed =
        Process::spawn(vfield(&["--file", file.to_str().unwrap(), "--listen", &seed_addr, "--upload-limit", "6"]), &dir.join("seed.log"));
    let mut joiners = Vec::new();
    std::thread::sleep(Duration::from_millis(500));
    let joiner = |n: u8| format!("127.0.0.{}:{PORT}", n + 1);
    for n in 1..=JOINERS {
        joiners.push(Process::spawn(
            vfield(&["--bootstrap", &seed_addr, "--listen", &joiner(n), "--store", "64", "--upload-limit", "6"]),
            &dir.join(format!("joiner{n}.log")),
        ));
    }
    // Half way: the joiners hold half of what they will hold in the end, and every chunk
    // has a holder besides the seed (else killing it would leave a chunk nowhere).
    let deadline = Instant::now() + Duration::from_secs(180);
    let (seed_sent, held_at_kill) = loop {
        assert!(Instant::now() < deadline, "the joiners did not get half way within 180 s");
        std::thread::sleep(Duration::from_millis(300));
        let Some(s) = status(&seed_addr) else { continue };
        let peers_list = s["peers"].as_array().cloned().unwrap_or_default();
        let joiners_held: u64 =
            peers_list.iter().filter(|p| p["addr"] != seed_addr.as_str()).map(|p| p["held_bytes"].as_u64().unwrap_or(0)).sum();
        let every_chunk_twice = s["holders"].as_array().is_some_and(|h| h.iter().all(|n| n.as_u64().unwrap_or(0) >= 2));
        if peers_list.len() == JOINERS as usize + 1 && every_chunk_twice && joiners_held >= (SIZE as u64 * JOINERS as u64) / 2 {
            let seed = peers_list.iter().find(|p| p["addr"] == seed_addr.as_str()).unwrap();
            break (seed["bytes_sent"].as_u64().unwrap(), joiners_held);
        }
    };
    drop(seed); // killed and reaped
    eprintln!(
        "seed killed with the joiners holding {:.0}% of their total, after sending {:.2} images",
        held_at_kill as f64 * 100.0 / (SIZE as f64 * JOINERS as f64),
        seed_sent as f64 / SIZE as f64
    );
    // Every joiner completes without the seed.
    let deadline = Instant::now() + Duration::from_secs(180);
    let last = loop {
        let s = status(&joiner(1));
        if let Some(s) = &s {
            let list = s["peers"].as_array().cloned().unwrap_or_default();
            let complete = list.iter().filter(|p| p["held_bytes"].as_u64() == Some(SIZE as u64)).count();
            if list.len() == JOINERS as usize && complete == JOINERS as usize {
                break s.clone();
            }
            assert!(Instant::now() < deadline, "joiners did not complete within 180 s of the seed's death: {s}");
        }
        assert!(Instant::now() < deadline, "no status from {}", joiner(1));
        std::thread::sleep(Duration::from_millis(500));
    };
    let joiners_sent: u64 = last["peers"].as_array().unwrap().iter().map(|p| p["bytes_sent"].as_u64().unwrap_or(0)).sum();
    // The joiners served each other: more than the copies the seed sent were needed.
    assert!(joiners_sent > (SIZE as u64 * JOINERS as u64).saturating_sub(seed_sent), "joiners sent only {joiners_sent} bytes");
    let out = dir.join("fetched.bin");
    let fetch = vfield(&["fetch", "--bootstrap", &joiner(7), "-o", out.to_str().unwrap(), "--timeout", "120"]).output().unwrap();
    assert!(fetch.status.success(), "{}", String::from_utf8_lossy(&fetch.stderr));
    let fetched = std::fs::read(&out).unwrap();
    assert_eq!(fetched.len(), data.len());
    assert!(Sha256::digest(&fetched) == Sha256::digest(&data), "the fetched file differs from the seed's");
    eprintln!(
        "seed upload before its death: {:.2} images for {JOINERS} joiners; joiners uploaded {:.2} images",
        seed_sent as f64 / SIZE as f64,
        joiners_sent as f64 / SIZE as f64
    );
    drop(joiners);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A joiner holding its chunks on a disk (here a file) it was given: it fills up, comes
/// back after a restart with them (fetching nothing again), and serves a fetch alone once
/// the seed is gone; a file with data on it is refused untouched.
#[test]
fn a_joiner_on_a_disk_keeps_its_chunks_across_a_restart() {
    let dir = scratch("vfield-disk");
    let file = dir.join("image.bin");
    let data = random_bytes(4 << 20, 0xd15c);
    std::fs::write(&file, &data).unwrap();
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 8 << 20]).unwrap();
    let seed_addr = format!("127.0.0.1:{}", PORT + 100);
    let joiner_addr = format!("127.0.0.2:{}", PORT + 100);
    let joiner_args = ["--bootstrap", seed_addr.as_str(), "--listen", joiner_addr.as_str(), "--store-disk", disk.to_str().unwrap()];
    let mut seed = Process::spawn(vfield(&["--file", file.to_str().unwrap(), "--listen", &seed_addr]), &dir.join("seed.log"));
    seed.wait_for_log("seeding", Duration::from_secs(10));
    let mut first = Process::spawn(vfield(&joiner_args), &dir.join("joiner1.log"));
    first.wait_for_log("store settled: 16 of 16 chunks held", Duration::from_secs(60));
    drop(first);
    // Restarted (the seed gives it the manifest), it has every chunk already.
    let mut again = Process::spawn(vfield(&joiner_args), &dir.join("joiner2.log"));
    let log = again.wait_for_log("store settled: 16 of 16 chunks held", Duration::from_secs(30));
    assert!(log.contains("16 chunks of this image kept from before"), "{log}");
    let joiner_status = status(&joiner_addr).expect("the joiner answers status");
    let me = joiner_status["peers"].as_array().unwrap().iter().find(|p| p["addr"] == joiner_addr.as_str()).cloned().unwrap();
    assert_eq!(me["bytes_received"], 0, "the restarted joiner fetched again: {me}");
    drop(seed);
    let out = dir.join("fetched.bin");
    let fetch = vfield(&["fetch", "--bootstrap", &joiner_addr, "-o", out.to_str().unwrap(), "--timeout", "60"]).output().unwrap();
    assert!(fetch.status.success(), "{}", String::from_utf8_lossy(&fetch.stderr));
    assert!(std::fs::read(&out).unwrap() == data, "the fetched file differs from the seed's");
    // A "disk" with data on it: refused, not a byte written.
    let taken = dir.join("taken.img");
    std::fs::write(&taken, b"my holiday photos").unwrap();
    let refused = vfield(&["--bootstrap", &joiner_addr]).args(["--store-disk", taken.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("holds data"), "{err}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"my holiday photos");
    drop(again);
    std::fs::remove_dir_all(&dir).unwrap();
}
