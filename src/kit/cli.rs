//! `viver kit ...` (what `kit/viver-kit` runs).

use super::error::KitError;
use super::{check_kernel, image, initrd, inspect, media};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand)]
pub enum KitCommand {
    /// Convert a root directory (or / of the running system) into a SquashFS image + manifest.
    Image(ImageArgs),
    /// Build the initramfs: static /init, selected kernel modules, their tables.
    Initrd(InitrdArgs),
    /// Build a bootable ISO or raw disk image (USB stick, hard disk, SD card).
    Media(MediaArgs),
    /// Copy an image and its manifest into DIR/viver/ (e.g. a mounted USB stick).
    InstallImage(InstallImageArgs),
    /// Check a kernel .config against what VIVER needs (exit 1 if something is missing).
    CheckKernel(CheckKernelArgs),
    /// List the contents of an initrd (any mix of plain, gzip, zstd, xz segments).
    Inspect(InspectArgs),
    /// Check an image against its manifest as the boot does (viver.verify=LEVEL); prints
    /// the report as JSON. Exit 1 when a chunk does not match.
    Verify(VerifyArgs),
    /// Ship a boot profile recorded with viver.vfield.record (the booted node's
    /// /run/viver/vfield-profile.toml) in the image's manifest: V-FIELD nodes then prefetch
    /// what their boot reads.
    Profile(ProfileArgs),
    /// Make an ed25519 signing key pair: NAME.key (secret, for `image --sign`) and NAME.pub
    /// (for `initrd --trust`).
    Keygen(KeygenArgs),
}

#[derive(Args)]
pub struct KeygenArgs {
    /// NAME: writes NAME.key and NAME.pub (never over existing files).
    #[arg(short, long)]
    pub output: PathBuf,
    /// A note kept in the public key file (who signs with it).
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The image (its manifest must sit beside it).
    pub image: PathBuf,
    #[arg(long, default_value = "boot", value_parser = ["quick", "boot", "full"])]
    pub level: String,
    /// The init to follow (default: the boot's list, /sbin/init first).
    #[arg(long)]
    pub init: Option<String>,
    /// Also decide as a boot whose initrd trusts these keys would (repeatable).
    #[arg(long, value_name = "PUBKEY")]
    pub trust: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ImageArgs {
    /// Root directory of the installed Linux (/ for the running system).
    pub root: PathBuf,
    /// Output image, e.g. debian.squashfs (the manifest debian.toml is written beside it).
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long, default_value = "zstd", value_parser = ["zstd", "xz", "gzip", "lz4", "lzo"])]
    pub compressor: String,
    /// Name recorded in the manifest (default: the output's file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Leave out extended attributes (file capabilities and SELinux labels are lost).
    #[arg(long)]
    pub no_xattrs: bool,
    /// Bytes per chunk hash in the manifest (a power of two, 16384 to 67108864).
    #[arg(long, default_value_t = crate::image::chunks::DEFAULT_CHUNK)]
    pub chunk_size: u64,
    /// Sign the manifest with this key (NAME.key from `viver-kit keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Append no dm-verity hash tree (manifest format 2: no block-level checks at boot).
    #[arg(long)]
    pub no_verity: bool,
}

#[derive(Args)]
pub struct InitrdArgs {
    /// The kernel's module directory, /lib/modules/RELEASE.
    #[arg(long)]
    pub modules: PathBuf,
    /// Output initrd file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Include this module too (with its dependencies); repeatable.
    #[arg(long = "add-module", value_name = "NAME")]
    pub add_module: Vec<String>,
    /// Add /bin/busybox (static) and /bin/sh for a rescue shell.
    #[arg(long)]
    pub rescue_shell: bool,
    /// Only the modules this machine uses (/proc/modules, /sys/module) plus filesystems.
    #[arg(long)]
    pub host_only: bool,
    /// With --host-only: the machine's root, whose proc/modules and sys/module say what it
    /// uses (default /; another machine's captured /proc and /sys work too).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    #[arg(long, value_enum, default_value = "gzip")]
    pub compress: initrd::InitrdCompression,
    /// The static viver binary to use as /init (default: this executable).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// A directory of *.list module lists replacing the shipped ones.
    #[arg(long)]
    pub lists: Option<PathBuf>,
    /// A files.list (SOURCE DEST [MODE] lines) replacing the shipped one.
    #[arg(long)]
    pub files_list: Option<PathBuf>,
    /// The busybox binary for --rescue-shell (default /bin/busybox).
    #[arg(long)]
    pub busybox: Option<PathBuf>,
    /// Prepend the early microcode cpio (kernel/x86/microcode/GenuineIntel.bin and
    /// AuthenticAMD.bin, uncompressed) from Debian's intel-microcode / amd64-microcode.
    #[arg(long)]
    pub microcode: bool,
    /// With --microcode: the root whose lib/firmware/intel-ucode and amd-ucode hold the
    /// microcode (default /).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub microcode_root: PathBuf,
    /// Trust images signed by this key (NAME.pub from `viver-kit keygen`); repeatable.
    /// With any key, the boot accepts only images signed by one of them.
    #[arg(long, value_name = "PUBKEY")]
    pub trust: Vec<PathBuf>,
}

#[derive(Args)]
pub struct MediaArgs {
    #[arg(long, value_enum)]
    pub kind: media::MediaKind,
    /// Kernel image (vmlinuz).
    #[arg(long)]
    pub kernel: PathBuf,
    /// Initrd built by `viver kit initrd`.
    #[arg(long)]
    pub initrd: PathBuf,
    /// The image (its manifest must sit beside it).
    #[arg(long, required_unless_present = "no_image")]
    pub image: Option<PathBuf>,
    /// Output file (.iso or raw disk image).
    #[arg(short, long)]
    pub output: PathBuf,
    /// A boot-only medium: the image is found on another disk.
    #[arg(long, conflicts_with = "image")]
    pub no_image: bool,
    /// Extra kernel command line.
    #[arg(long, default_value = "")]
    pub append: String,
    /// The node's role on the kernel command line (`viver.role=LIST`): `boot-server`
    /// (the default: the node serves the LAN), another comma-separated list, or `none`.
    #[arg(long, default_value = media::DEFAULT_ROLE, value_name = "none|LIST")]
    pub role: String,
}

#[derive(Args)]
pub struct ProfileArgs {
    /// The image (its manifest beside it is rewritten; the image is not touched).
    pub image: PathBuf,
    /// The recording; without it, `--remove` takes the profile out.
    #[arg(required_unless_present = "remove")]
    pub recording: Option<PathBuf>,
    /// Take the manifest's profile out.
    #[arg(long, conflicts_with = "recording")]
    pub remove: bool,
    /// Sign the new manifest with this key (needed when the old one was signed).
    #[arg(long)]
    pub sign: Option<PathBuf>,
}

#[derive(Args)]
pub struct InstallImageArgs {
    /// The image (its manifest must sit beside it).
    pub image: PathBuf,
    /// Target directory, e.g. the mount point of a USB stick.
    pub dir: PathBuf,
}

#[derive(Args)]
pub struct CheckKernelArgs {
    /// The kernel's .config (e.g. /boot/config-$(uname -r)).
    pub config: PathBuf,
}

#[derive(Args)]
pub struct InspectArgs {
    pub initrd: PathBuf,
    /// Unpack into this directory (device nodes are skipped; paths escaping it refused).
    #[arg(long)]
    pub extract: Option<PathBuf>,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn run(cmd: KitCommand) -> i32 {
    match execute(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("viver kit: {e}");
            2
        }
    }
}

fn execute(cmd: KitCommand) -> Result<i32, KitError> {
    let started = Instant::now();
    match cmd {
        KitCommand::Image(a) => {
            let r = image::build_image(&image::ImageOptions {
                root: a.root,
                output: a.output.clone(),
                compressor: a.compressor,
                name: a.name,
                xattrs: !a.no_xattrs,
                chunk_size: a.chunk_size,
                verity: !a.no_verity,
                sign: a.sign.clone(),
            })?;
            if let Some(v) = &r.manifest.verity {
                println!("dm-verity tree appended: {} data blocks, root hash {}", v.data_blocks, v.root);
            }
            if let Some(key) = &a.sign {
                println!("manifest signed with {}", key.display());
            }
            println!(
                "image {} ({}, {}, id {}), manifest {}, {} fstab entries disabled, {:.1} s",
                a.output.display(),
                mib(r.manifest.size),
                r.manifest.compressor,
                r.manifest.id,
                r.manifest_path.display(),
                r.excluded_fstab_entries,
                started.elapsed().as_secs_f64()
            );
        }
        KitCommand::Initrd(a) => {
            let r = initrd::build_initrd(&initrd::InitrdOptions {
                modules: a.modules,
                output: a.output.clone(),
                add_modules: a.add_module,
                rescue_shell: a.rescue_shell,
                host_only: a.host_only,
                host_root: a.host_root,
                compress: a.compress,
                init: a.init,
                lists: a.lists,
                files_list: a.files_list,
                busybox: a.busybox,
                microcode: a.microcode.then_some(a.microcode_root),
                trust: a.trust,
            })?;
            for k in &r.trusted {
                println!("trusts key {k}");
            }
            for u in &r.unmatched {
                log::info!("{u}");
            }
            for m in &r.microcode {
                println!("early microcode {m}");
            }
            println!(
                "initrd {}: {} ({} unpacked), {} modules, {} entries, {:.2} s",
                a.output.display(),
                mib(r.compressed_size),
                mib(r.unpacked_size),
                r.modules.len(),
                r.entries,
                started.elapsed().as_secs_f64()
            );
        }
        KitCommand::Media(a) => {
            let opts = media::MediaOptions {
                kind: a.kind,
                kernel: a.kernel,
                initrd: a.initrd,
                image: if a.no_image { None } else { a.image },
                output: a.output.clone(),
                append: a.append,
                role: if a.role.trim() == "none" { None } else { Some(a.role.trim().to_string()) },
                ipxe_dir: PathBuf::from(media::IPXE_DIR),
            };
            if opts.role.as_deref().is_some_and(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                return Err(KitError::BadInput(format!("--role {:?}: give none or a comma-separated list without spaces", a.role)));
            }
            let report = media::build(&opts)?;
            for w in &report.warnings {
                eprintln!("viver kit media: warning: {w}");
            }
            println!("{:?} medium {}: {}, {:.1} s", a.kind, a.output.display(), mib(report.size), started.elapsed().as_secs_f64());
        }
        KitCommand::InstallImage(a) => {
            let dst = image::install_image(&a.image, &a.dir)?;
            println!("installed {}", dst.display());
        }
        KitCommand::CheckKernel(a) => {
            let r = check_kernel::check_file(&a.config)?;
            for w in &r.warnings {
                println!("optional: {w}");
            }
            if r.missing.is_empty() {
                println!("{}: everything VIVER needs is there ({} requirements)", a.config.display(), r.satisfied);
            } else {
                for m in &r.missing {
                    println!("MISSING: {m}");
                }
                println!("{}: {} requirement(s) missing for VIVER", a.config.display(), r.missing.len());
                return Ok(1);
            }
        }
        KitCommand::Verify(a) => {
            use crate::image::{manifest::Manifest, verify};
            let manifest = Manifest::load(&image::manifest_path_for(&a.image)).map_err(|e| KitError::BadInput(e.to_string()))?;
            let level = match a.level.as_str() {
                "quick" => verify::Level::Quick,
                "full" => verify::Level::Full,
                _ => verify::Level::Boot,
            };
            let inits: Vec<String> = match a.init {
                Some(init) => vec![init],
                None => crate::boot::switch_root::DEFAULT_INITS.iter().map(|s| s.to_string()).collect(),
            };
            verify::quick(&a.image, Some(&manifest)).map_err(|e| KitError::BadInput(e.to_string()))?;
            if let Some(v) = &manifest.verity {
                let mut file = std::fs::File::open(&a.image).map_err(|e| KitError::io(&a.image, e))?;
                if let Err(e) = v.check_tree(&mut file, &a.image.display().to_string()) {
                    eprintln!("viver kit verify: {e}");
                    return Ok(1);
                }
                eprintln!("dm-verity tree: superblock and root hash {} agree with the manifest", v.root);
            }
            if !a.trust.is_empty() {
                let keys = initrd::read_trusted_keys(&a.trust)?;
                let trusted = crate::image::trust::TrustedKeys { keys, problems: vec![], required: true };
                match crate::image::trust::check(&trusted, Some(&manifest)) {
                    Ok(crate::image::trust::Decision::Signed(id)) => eprintln!("signed by trusted key {id}"),
                    Ok(crate::image::trust::Decision::NotRequired) => {}
                    Err(e) => {
                        eprintln!("viver kit verify: {e}");
                        return Ok(1);
                    }
                }
            }
            match verify::chunks(&a.image, Some(&manifest), level, &inits) {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                    eprintln!("checked in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
                }
                Err(e) => {
                    eprintln!("viver kit verify: {e}");
                    return Ok(1);
                }
            }
        }
        KitCommand::Profile(a) => {
            let shipped = super::profile::ship(&a.image, a.recording.as_deref(), a.sign.as_deref())?;
            let signed = if shipped.signed { ", signed" } else { "" };
            match a.recording {
                Some(_) => println!(
                    "{}: boot profile of {} chunks (of {}) shipped{signed}",
                    shipped.manifest_path.display(),
                    shipped.chunks,
                    shipped.chunk_count
                ),
                None => println!("{}: boot profile removed{signed}", shipped.manifest_path.display()),
            }
        }
        KitCommand::Keygen(a) => {
            let (secret, public, id) = image::keygen(&a.output, a.comment)?;
            println!("key {id}: {} (secret: keep it off the media), {} (for initrd --trust)", secret.display(), public.display());
        }
        KitCommand::Inspect(a) => {
            let segments = inspect::read_initrd(&a.initrd)?;
            for s in &segments {
                println!("# segment at byte {}: {:?}, {} entries", s.offset, s.compression, s.entries.len());
                for e in &s.entries {
                    let size = if e.mode & 0o170000 == 0o020000 { format!("{},{}", e.rdev.0, e.rdev.1) } else { e.size.to_string() };
                    let link =
                        if e.mode & 0o170000 == 0o120000 { format!(" -> {}", String::from_utf8_lossy(&e.data)) } else { String::new() };
                    println!("{} {:>10} {}{}", inspect::mode_string(e.mode), size, e.name, link);
                }
            }
            if let Some(dir) = a.extract {
                let n = inspect::extract(&segments, &dir)?;
                println!("extracted {n} entries into {}", dir.display());
            }
        }
    }
    Ok(0)
}
