//! `viver kit image ROOT -o OUT.squashfs`: one read-only SquashFS image of an installed
//! Linux, plus its manifest `OUT.toml`.
//!
//! ROOT is never modified. What must not travel is excluded (kernel filesystems'
//! contents, /tmp, swap files, the output itself, SSH host keys); what must change in
//! the copy (/etc/fstab, an empty /etc/machine-id) is supplied through mksquashfs pseudo
//! file definitions, which replace the excluded originals inside the image only.
//!
//! After mksquashfs the kit pads the SquashFS to whole 4 KiB blocks and appends its
//! dm-verity hash tree (unless `--no-verity`); the manifest's chunk hashes and checksum
//! cover the whole file, tree included, and `--sign KEY` signs the manifest.

use super::atomic::{source_date_epoch, PendingOutput, ScratchDir};
use super::error::{IoContext, KitError};
use super::{fstab, tools};
use crate::image::chunks;
use crate::image::manifest::{id_from_checksum, Chunks, Manifest, FORMAT, FORMAT_V2};
use crate::image::signature::SecretKey;
use crate::image::verity::VerityParams;
use crate::image::verity_tree;
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const COMPRESSORS: [&str; 5] = ["zstd", "xz", "gzip", "lz4", "lzo"];

pub struct ImageOptions {
    pub root: PathBuf,
    pub output: PathBuf,
    pub compressor: String,
    pub name: Option<String>,
    /// Keep extended attributes (file capabilities such as ping's cap_net_raw live there).
    pub xattrs: bool,
    /// Bytes per chunk hash in the manifest ([`chunks::DEFAULT_CHUNK`]).
    pub chunk_size: u64,
    /// Append a dm-verity hash tree and describe it in the manifest (format 3).
    pub verity: bool,
    /// Sign the manifest with this key (`viver-kit keygen`).
    pub sign: Option<PathBuf>,
}

pub struct ImageResult {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub excluded_fstab_entries: usize,
}

/// Directories whose contents never belong in the image; the empty directories stay
/// as mount points for /init and systemd.
const EMPTIED_DIRS: [&str; 5] = ["proc", "sys", "dev", "run", "tmp"];
/// Usual swap file names, excluded even when fstab does not list them.
const SWAP_FILES: [&str; 3] = ["swapfile", "swap.img", "swap"];

/// A Linux root has /etc and /usr or /bin: anything else is a mistyped path.
pub fn check_root(root: &Path) -> Result<(), KitError> {
    if !root.is_dir() {
        return Err(KitError::BadInput(format!("root {} does not exist or is not a directory", root.display())));
    }
    if !root.join("etc").is_dir() || !(root.join("usr").is_dir() || root.join("bin").is_dir()) {
        return Err(KitError::BadInput(format!("{} does not look like a Linux root: it needs /etc and /usr or /bin", root.display())));
    }
    Ok(())
}

/// Kernel releases installed in the root (`lib/modules/*`, merged-/usr aware).
pub fn kernel_releases(root: &Path) -> Vec<String> {
    let mut releases = std::collections::BTreeSet::new();
    for dir in [root.join("lib/modules"), root.join("usr/lib/modules")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    releases.insert(e.file_name().to_string_lossy().to_string());
                }
            }
        }
    }
    releases.into_iter().collect()
}

/// Escapes the characters mksquashfs's -wildcards treats specially.
fn escape_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `path` relative to `root` when it lies inside it (both canonicalised as far as they exist).
fn inside_root(root: &Path, path: &Path) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let full = dir.canonicalize().ok()?.join(path.file_name()?);
    full.strip_prefix(&root).ok().map(Path::to_path_buf)
}

pub fn sha256_file(path: &Path) -> Result<(String, u64), KitError> {
    let mut file = std::fs::File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, size))
}

/// The manifest path beside an image: `debian.squashfs` -> `debian.toml`.
pub fn manifest_path_for(image: &Path) -> PathBuf {
    image.with_extension("toml")
}

/// Reads a signing key written by `viver-kit keygen`.
pub fn load_secret_key(path: &Path) -> Result<SecretKey, KitError> {
    let text = std::fs::read_to_string(path).at(path)?;
    SecretKey::parse(&text, &path.display().to_string()).map_err(|e| KitError::BadInput(e.to_string()))
}

/// `keygen -o NAME`: NAME.key (the signing key, mode 0600) and NAME.pub (for
/// `initrd --trust`). Refuses to overwrite a key.
pub fn keygen(name: &Path, comment: Option<String>) -> Result<(PathBuf, PathBuf, String), KitError> {
    use std::os::unix::fs::OpenOptionsExt;
    let secret_path = PathBuf::from(format!("{}.key", name.display()));
    let public_path = PathBuf::from(format!("{}.pub", name.display()));
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(KitError::BadInput(format!("{} exists: keygen never overwrites a key", p.display())));
        }
    }
    if comment.as_deref().is_some_and(|c| c.contains(['"', '\\']) || c.chars().any(char::is_control)) {
        return Err(KitError::BadInput("--comment may not hold quotes, backslashes or control characters".into()));
    }
    let key = SecretKey::generate().at(Path::new("/dev/urandom"))?;
    let public = key.public(comment);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&secret_path).at(&secret_path)?;
    f.write_all(key.to_text().as_bytes()).and_then(|_| f.sync_all()).at(&secret_path)?;
    std::fs::write(&public_path, public.to_text()).at(&public_path)?;
    Ok((secret_path, public_path, public.id.to_string()))
}

/// Pads the SquashFS at `path` to whole verity blocks and appends its hash tree; the
/// salt is derived from the image's bytes, so a rebuild is identical.
fn append_verity(path: &Path) -> Result<VerityParams, KitError> {
    let size = std::fs::metadata(path).at(path)?.len();
    let data_blocks = size.div_ceil(verity_tree::BLOCK);
    let mut hasher = Sha256::new();
    hasher.update(b"VIVER verity salt 1\n");
    let mut file = std::fs::File::open(path).at(path)?;
    std::io::copy(&mut file, &mut hasher).at(path)?;
    let salt: [u8; 32] = hasher.finalize().into();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&Sha256::digest(salt)[..16]);
    let file = std::fs::File::open(path).at(path)?;
    let tree = verity_tree::build(&mut std::io::BufReader::with_capacity(1 << 20, file), data_blocks, &salt, uuid).at(path)?;
    let mut out = std::fs::OpenOptions::new().append(true).open(path).at(path)?;
    let pad = data_blocks * verity_tree::BLOCK - size;
    out.write_all(&vec![0u8; pad as usize]).and_then(|_| out.write_all(&tree.bytes)).and_then(|_| out.sync_all()).at(path)?;
    Ok(VerityParams::of(&tree, &salt))
}

pub fn build_image(opts: &ImageOptions) -> Result<ImageResult, KitError> {
    check_root(&opts.root)?;
    // The key first: a wrong path must not cost a whole mksquashfs run.
    let key = opts.sign.as_deref().map(load_secret_key).transpose()?;
    if !opts.chunk_size.is_power_of_two() || !(chunks::BLOCK..=chunks::MAX_CHUNK).contains(&opts.chunk_size) {
        return Err(KitError::BadInput(format!(
            "chunk size {} must be a power of two from {} to {}",
            opts.chunk_size,
            chunks::BLOCK,
            chunks::MAX_CHUNK
        )));
    }
    if !COMPRESSORS.contains(&opts.compressor.as_str()) {
        return Err(KitError::BadInput(format!("unknown compressor {:?}; use one of {}", opts.compressor, COMPRESSORS.join(", "))));
    }
    let mksquashfs = tools::find("mksquashfs")?;
    let image_name = opts
        .output
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .filter(|n| !n.contains('/') && !n.is_empty())
        .ok_or_else(|| KitError::BadInput(format!("output {} has no file name", opts.output.display())))?;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| opts.output.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "image".into()));
    let manifest_path = manifest_path_for(&opts.output);
    let image_out = PendingOutput::new(&opts.output)?;
    let manifest_out = PendingOutput::new(&manifest_path)?;
    let scratch = ScratchDir::new("image")?;
    let fixed_time = source_date_epoch();
    let created =
        fixed_time.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));

    // What stays out, as -wildcards patterns relative to ROOT.
    let mut excludes: Vec<String> = EMPTIED_DIRS.iter().map(|d| format!("{d}/*")).collect();
    excludes.push("etc/ssh/ssh_host_*".into());
    excludes.extend(SWAP_FILES.iter().filter(|f| opts.root.join(f).is_file()).map(|f| f.to_string()));
    for out in [&opts.output, &image_out.temp_path, &manifest_path, &manifest_out.temp_path] {
        if let Some(rel) = inside_root(&opts.root, out) {
            excludes.push(escape_pattern(&rel.to_string_lossy()));
        }
    }

    // Replacements: pseudo definitions with an explicit time, so they are deterministic.
    let mut pseudo = String::new();
    let mut disabled = 0;
    let fstab_path = opts.root.join("etc/fstab");
    if fstab_path.is_file() {
        let text = std::fs::read_to_string(&fstab_path).at(&fstab_path)?;
        for swap in fstab::swap_files(&text) {
            if let Some(rel) = swap.strip_prefix('/') {
                excludes.push(escape_pattern(rel));
            }
        }
        let (adapted, n) = fstab::adapt(&text);
        disabled = n;
        let staged = scratch.path.join("fstab");
        std::fs::write(&staged, adapted).at(&staged)?;
        excludes.push("etc/fstab".into());
        pseudo.push_str(&format!("etc/fstab F {created} 644 0 0 cat '{}'\n", staged.display()));
    }
    if opts.root.join("etc").is_dir() {
        // An empty machine-id makes systemd generate a fresh one at each boot instead of
        // every machine booting the image sharing the source's identity.
        excludes.push("etc/machine-id".into());
        pseudo.push_str(&format!("etc/machine-id F {created} 444 0 0 true\n"));
    }
    let pseudo_path = scratch.path.join("pseudo");
    std::fs::write(&pseudo_path, &pseudo).at(&pseudo_path)?;
    let exclude_path = scratch.path.join("exclude");
    std::fs::write(&exclude_path, excludes.join("\n") + "\n").at(&exclude_path)?;

    let mut cmd = Command::new(&mksquashfs);
    cmd.arg(&opts.root)
        .arg(&image_out.temp_path)
        .args(["-noappend", "-no-recovery", "-one-file-system", "-comp", &opts.compressor])
        .arg("-pf")
        .arg(&pseudo_path)
        .arg("-wildcards")
        .arg("-ef")
        .arg(&exclude_path);
    if fixed_time.is_none() {
        // With SOURCE_DATE_EPOCH set, mksquashfs itself uses it for the filesystem time
        // and every file's time (and refuses -mkfs-time besides). Without it, file
        // times stay as they are: clamping them would make Python consider every .pyc
        // cache stale.
        cmd.args(["-mkfs-time", &created.to_string()]);
    }
    if !opts.xattrs {
        cmd.arg("-no-xattrs");
    }
    if std::io::stderr().is_terminal() {
        // mksquashfs draws its own progress bar on a terminal.
        cmd.arg("-quiet");
        tools::run_visible("mksquashfs", &mut cmd)?;
    } else {
        cmd.args(["-quiet", "-no-progress"]);
        tools::run_captured("mksquashfs", &mut cmd)?;
    }

    let verity = if opts.verity { Some(append_verity(&image_out.temp_path)?) } else { None };
    // One pass: the SHA-256 of the whole image and its chunk hashes.
    let digest = {
        let path = &image_out.temp_path;
        let mut file = std::fs::File::open(path).at(path)?;
        chunks::digest(&mut file, opts.chunk_size).at(path)?
    };
    let hex = chunks::hex(&digest.sha256);
    let manifest = Manifest {
        format: if verity.is_some() { FORMAT } else { FORMAT_V2 },
        id: id_from_checksum(&hex),
        name,
        image: image_name,
        created,
        size: digest.size,
        checksum: format!("sha256:{hex}"),
        compressor: opts.compressor.clone(),
        kernels: kernel_releases(&opts.root),
        chunks: Some(Chunks::from_digest(&digest)),
        verity,
        profile: None,
        seal: None,
    };
    {
        let mut f = std::fs::File::create(&manifest_out.temp_path).at(&manifest_out.temp_path)?;
        f.write_all(manifest.to_signed_text(key.as_ref()).as_bytes()).at(&manifest_out.temp_path)?;
        f.sync_all().at(&manifest_out.temp_path)?;
    }
    // The image first: a manifest under its final name promises a complete image.
    image_out.commit()?;
    manifest_out.commit()?;
    Ok(ImageResult { manifest, manifest_path, excluded_fstab_entries: disabled })
}

/// `install-image IMAGE DIR`: copies the image and its manifest into DIR/viver/.
pub fn install_image(image: &Path, dir: &Path) -> Result<PathBuf, KitError> {
    let manifest_src = manifest_path_for(image);
    let manifest = Manifest::load(&manifest_src).map_err(|e| KitError::BadInput(e.to_string()))?;
    if !image.is_file() {
        return Err(KitError::BadInput(format!("image {} does not exist", image.display())));
    }
    if !dir.is_dir() {
        return Err(KitError::BadInput(format!("target directory {} does not exist", dir.display())));
    }
    let target = dir.join("viver");
    std::fs::create_dir_all(&target).at(&target)?;
    let image_dst = target.join(&manifest.image);
    let manifest_dst = manifest_path_for(&image_dst);
    let image_out = PendingOutput::new(&image_dst)?;
    let manifest_out = PendingOutput::new(&manifest_dst)?;
    copy_synced(image, &image_out.temp_path)?;
    let (hex, size) = sha256_file(&image_out.temp_path)?;
    if Some(hex.as_str()) != manifest.checksum_hex() || size != manifest.size {
        return Err(KitError::BadInput(format!(
            "{} does not match its manifest {} (size or checksum differ): rebuild the image",
            image.display(),
            manifest_src.display()
        )));
    }
    copy_synced(&manifest_src, &manifest_out.temp_path)?;
    image_out.commit()?;
    manifest_out.commit()?;
    Ok(image_dst)
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), KitError> {
    std::fs::copy(from, to).at(to)?;
    std::fs::File::open(to).and_then(|f| f.sync_all()).at(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_wildcards() {
        assert_eq!(escape_pattern("a*b?[c]"), "a\\*b\\?\\[c\\]");
    }

    #[test]
    fn manifest_beside_image() {
        assert_eq!(manifest_path_for(Path::new("/x/debian.squashfs")), PathBuf::from("/x/debian.toml"));
    }
}
