//! Verified images on the kit side: `keygen`, `image --sign`, `initrd --trust`, and the
//! dm-verity tree the kit appends, cross-checked with Debian's `veritysetup`
//! (cryptsetup-bin), which never saw VIVER's code.
mod kit_common;
use kit_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use viver::image::manifest::Manifest;

/// A root with an incompressible file, so the image has many data blocks.
fn image_of(dir: &Path, extra: &[&str]) -> (PathBuf, Manifest) {
    let root = fake_root(dir);
    let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(root.join("usr/bin/blob"), blob).unwrap();
    let image = dir.join("t.squashfs");
    run_ok(viver().arg("image").arg(&root).arg("-o").arg(&image).args(extra));
    let manifest = Manifest::load(&image.with_extension("toml")).unwrap();
    (image, manifest)
}

fn veritysetup(args: &[&str]) -> std::process::Output {
    Command::new("veritysetup").args(args).output().expect("veritysetup runs (apt-get install cryptsetup-bin, or qemu-harness/setup)")
}

#[test]
fn the_appended_tree_is_what_veritysetup_expects() {
    let dir = scratch("verity-tree");
    let (image, m) = image_of(&dir, &[]);
    assert_eq!(m.format, 3);
    let v = m.verity.clone().expect("[verity] in the manifest");
    let img = image.to_str().unwrap();
    let offset = format!("--hash-offset={}", v.hash_offset);
    // The whole file is described: data, superblock, tree.
    assert_eq!(std::fs::metadata(&image).unwrap().len(), m.size);
    let out = veritysetup(&["verify", img, img, &v.root, &offset]);
    assert!(out.status.success(), "veritysetup verify: {}", String::from_utf8_lossy(&out.stderr));
    let dump = String::from_utf8(veritysetup(&["dump", img, &offset]).stdout).unwrap();
    let field = |name: &str| dump.lines().find(|l| l.starts_with(name)).map(|l| l[name.len()..].trim().to_string());
    assert_eq!(field("Data blocks:").as_deref(), Some(v.data_blocks.to_string().as_str()), "{dump}");
    assert_eq!(field("Salt:").as_deref(), Some(v.salt.as_str()), "{dump}");
    assert_eq!(field("Hash type:").as_deref(), Some("1"), "{dump}");
    assert_eq!(field("Hash algorithm:").as_deref(), Some("sha256"), "{dump}");
    // The SquashFS itself is untouched by what follows it.
    assert!(unsquashfs_list(&image).iter().any(|l| l == "/usr/bin/blob"));
    // The kit's own check agrees.
    run_ok(viver().arg("verify").arg(&image).args(["--level", "full"]));

    // One byte changed in the data: veritysetup (and the kit) refuse it.
    let bad = dir.join("bad.squashfs");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[(v.hash_offset / 2) as usize] ^= 1;
    std::fs::write(&bad, &bytes).unwrap();
    let b = bad.to_str().unwrap();
    let out = veritysetup(&["verify", b, b, &v.root, &offset]);
    assert!(!out.status.success(), "veritysetup accepted a changed block");
    // Another root hash: refused by veritysetup and by the boot's cheap check.
    let wrong = "0".repeat(64);
    assert!(!veritysetup(&["verify", img, img, &wrong, &offset]).status.success());
    let edited = std::fs::read_to_string(image.with_extension("toml")).unwrap().replace(&v.root, &wrong);
    let edited_dir = dir.join("edited");
    std::fs::create_dir_all(&edited_dir).unwrap();
    std::fs::copy(&image, edited_dir.join("t.squashfs")).unwrap();
    std::fs::write(edited_dir.join("t.toml"), edited).unwrap();
    let out = viver().arg("verify").arg(edited_dir.join("t.squashfs")).args(["--level", "quick"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not the hash of the tree's top block"), "{err}");
}

#[test]
fn a_truncated_tree_is_refused_with_the_reason() {
    let dir = scratch("verity-truncated");
    let (image, m) = image_of(&dir, &[]);
    // The tree cut short, and the manifest edited to the new size (a careless copy tool):
    // the [verity] section no longer adds up.
    let cut = m.size - 4096;
    let f = std::fs::OpenOptions::new().write(true).open(&image).unwrap();
    f.set_len(cut).unwrap();
    let text =
        std::fs::read_to_string(image.with_extension("toml")).unwrap().replace(&format!("size = {}", m.size), &format!("size = {cut}"));
    let err = Manifest::parse(&text, "t.toml").unwrap_err().to_string();
    assert!(err.contains("[verity]") && err.contains("truncated"), "{err}");
    // Unedited, the size check says so first.
    let out = viver().arg("verify").arg(&image).args(["--level", "quick"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("its manifest says"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn keygen_sign_and_trust() {
    let dir = scratch("trust-keys");
    let ours = dir.join("ours");
    let out = stdout(&run_ok(viver().arg("keygen").arg("-o").arg(&ours).args(["--comment", "test builder"])));
    assert!(out.contains("ours.key") && out.contains("ours.pub"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dir.join("ours.key")).unwrap().permissions().mode() & 0o777, 0o600);
    // Never over an existing key.
    let again = viver().arg("keygen").arg("-o").arg(&ours).output().unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    run_ok(viver().arg("keygen").arg("-o").arg(dir.join("theirs")));

    let (image, m) = image_of(&dir, &["--sign", dir.join("ours.key").to_str().unwrap()]);
    let text = std::fs::read_to_string(image.with_extension("toml")).unwrap();
    assert!(text.contains("\n[signature]\n"), "{text}");
    // The signature comes after the chunk hashes and the verity root hash it covers.
    let at = text.find("[signature]").unwrap();
    assert!(text[..at].contains(&m.verity.as_ref().unwrap().root) && text[..at].contains("[chunks]"));

    let verify_with =
        |key: &str| viver().arg("verify").arg(&image).args(["--level", "quick", "--trust"]).arg(dir.join(key)).output().unwrap();
    assert!(verify_with("ours.pub").status.success(), "{}", String::from_utf8_lossy(&verify_with("ours.pub").stderr));
    let other = verify_with("theirs.pub");
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("signed by unknown key"), "{}", String::from_utf8_lossy(&other.stderr));

    // A bad --sign key is refused before mksquashfs runs.
    std::fs::write(dir.join("broken.key"), "[secret-key]\nalgorithm = \"ed25519\"\n").unwrap();
    let out = viver()
        .arg("image")
        .arg(dir.join("root"))
        .arg("-o")
        .arg(dir.join("x.squashfs"))
        .arg("--sign")
        .arg(dir.join("broken.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs key-id"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.join("x.squashfs").exists());

    // initrd --trust: the key travels under its id; a secret key is refused.
    let initrd = dir.join("initrd.img");
    let out = stdout(&run_ok(
        viver()
            .arg("initrd")
            .arg("--modules")
            .arg(release_dir())
            .arg("-o")
            .arg(&initrd)
            .args(["--compress", "none", "--trust"])
            .arg(dir.join("ours.pub")),
    ));
    let id = m.seal.as_ref().unwrap().signature.as_ref().unwrap().key_id.to_string();
    assert!(out.contains(&format!("trusts key {id}")), "{out}");
    let listing = stdout(&run_ok(viver().arg("inspect").arg(&initrd)));
    assert!(listing.contains(&format!("etc/viver/trusted/{id}.pub")), "{listing}");
    assert!(listing.contains("dm-verity.ko"), "the initrd lacks dm-verity: {listing}");
    let out = viver()
        .arg("initrd")
        .arg("--modules")
        .arg(release_dir())
        .arg("-o")
        .arg(dir.join("n.img"))
        .arg("--trust")
        .arg(dir.join("ours.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the .pub, never the .key"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn no_verity_writes_format_2() {
    let dir = scratch("no-verity");
    let (image, m) = image_of(&dir, &["--no-verity"]);
    assert_eq!(m.format, 2);
    assert!(m.verity.is_none() && m.seal.is_none());
    assert_eq!(std::fs::metadata(&image).unwrap().len(), m.size);
}
