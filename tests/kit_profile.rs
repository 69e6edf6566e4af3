//! `viver-kit profile`: a recorded boot profile shipped in the image's manifest. The image
//! is never touched, a recording of another image is refused, and a signed manifest is
//! signed again or left alone, never silently unsigned.
mod kit_common;
use kit_common::*;
use std::path::{Path, PathBuf};
use viver::image::manifest::Manifest;
use viver::image::profile::Recorded;

fn image_with_chunks(dir: &Path, extra: &[&str]) -> (PathBuf, Manifest) {
    let root = fake_root(dir);
    // Incompressible (xorshift), so the image has many chunks.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let blob: Vec<u8> = (0..1_500_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(root.join("usr/bin/blob"), blob).unwrap();
    let image = dir.join("p.squashfs");
    run_ok(viver().arg("image").arg(&root).arg("-o").arg(&image).args(["--chunk-size", "65536"]).args(extra));
    (image.clone(), Manifest::load(&image.with_extension("toml")).unwrap())
}

fn recording(dir: &Path, m: &Manifest, chunks: Vec<u32>) -> PathBuf {
    let chunk_size = m.chunks.as_ref().unwrap().size;
    let path = dir.join(format!("rec-{}.toml", chunks.len()));
    std::fs::write(&path, Recorded { image: m.id.clone(), chunk_size, seconds: 60, chunks }.to_toml()).unwrap();
    path
}

#[test]
fn a_recording_lands_in_the_manifest_and_nothing_else_changes() {
    let dir = scratch("kit-profile");
    let (image, before) = image_with_chunks(&dir, &[]);
    let image_bytes = std::fs::read(&image).unwrap();
    let count = before.chunks.as_ref().unwrap().hashes.len() as u32;
    assert!(count > 10, "{count} chunks");
    let order = vec![0, count - 1, 5, 1];
    let out = stdout(&run_ok(viver().arg("profile").arg(&image).arg(recording(&dir, &before, order.clone()))));
    assert!(out.contains(&format!("boot profile of 4 chunks (of {count}) shipped")), "{out}");
    let after = Manifest::load(&image.with_extension("toml")).unwrap();
    assert_eq!(after.profile.as_ref().map(|p| p.chunks.clone()), Some(order));
    assert_eq!(
        (after.id.clone(), after.chunks.clone(), after.checksum.clone()),
        (before.id.clone(), before.chunks.clone(), before.checksum.clone())
    );
    assert!(std::fs::read(&image).unwrap() == image_bytes, "the image changed");
    // The boot's own check still accepts the image with its new manifest.
    run_ok(viver().arg("verify").arg(&image).args(["--level", "quick"]));

    // Another image's recording, or one past the image's chunks: refused, manifest kept.
    let kept = std::fs::read_to_string(image.with_extension("toml")).unwrap();
    let foreign = dir.join("foreign.toml");
    std::fs::write(&foreign, Recorded { image: "0123456789abcdef".into(), chunk_size: 65536, seconds: 1, chunks: vec![1] }.to_toml())
        .unwrap();
    let past = recording(&dir, &before, vec![2, count]);
    for (bad, says) in
        [(&foreign, "recorded with image 0123456789abcdef".to_string()), (&past, format!("chunk {count}, the image has {count}"))]
    {
        let out = viver().arg("profile").arg(&image).arg(bad).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&says), "{err}");
        assert_eq!(std::fs::read_to_string(image.with_extension("toml")).unwrap(), kept, "a refused profile changed the manifest");
    }
    run_ok(viver().arg("profile").arg(&image).arg("--remove"));
    assert_eq!(Manifest::load(&image.with_extension("toml")).unwrap().profile, None);
}

#[test]
fn a_signed_manifest_is_signed_again_or_left_alone() {
    let dir = scratch("kit-profile-signed");
    run_ok(viver().arg("keygen").arg("-o").arg(dir.join("k")));
    let key = dir.join("k.key");
    let (image, m) = image_with_chunks(&dir, &["--sign", key.to_str().unwrap()]);
    let rec = recording(&dir, &m, vec![3, 2]);
    let out = viver().arg("profile").arg(&image).arg(&rec).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("give --sign KEY"), "{err}");
    assert!(Manifest::load(&image.with_extension("toml")).unwrap().profile.is_none());
    run_ok(viver().arg("profile").arg(&image).arg(&rec).arg("--sign").arg(&key));
    let signed = Manifest::load(&image.with_extension("toml")).unwrap();
    assert_eq!(signed.profile.map(|p| p.chunks), Some(vec![3, 2]));
    // The boot, trusting the key, accepts the re-signed manifest.
    run_ok(viver().arg("verify").arg(&image).args(["--level", "quick", "--trust"]).arg(dir.join("k.pub")));
}
