//! Handing the machine to the real system: the API filesystems move into the new root,
//! the initramfs's files are deleted (its memory would otherwise stay taken for good),
//! the new root becomes `/`, and its init replaces us as PID 1.

use super::log::BootLogger;
use super::report::{Failure, StageTiming};
use super::stage::Stage;
use super::{Boot, MountedImage, NEW_ROOT, REPORT_DIR};
use nix::mount::{mount, MsFlags};
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("no init to start in the new root: tried {tried}")]
    NoInit { tried: String },
    #[error("moving {from} to {to}: {errno}")]
    Move { from: String, to: String, errno: nix::Error },
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::Error },
    #[error("reading {path} back from the new root failed, so the boot stops before the initramfs is freed: {source}")]
    ReadBack { path: String, source: std::io::Error },
}

impl Boot {
    pub(super) fn switch_root(&mut self, image: &MountedImage) -> Result<std::convert::Infallible, Failure> {
        let new_root = Path::new(NEW_ROOT);
        let failure = |message: String| Failure { stage: Stage::SwitchRoot, message, details: vec![] };
        let init = find_init(new_root, self.settings.init.as_deref()).map_err(|e| failure(e.to_string()))?;
        self.report.init = Some(init.display().to_string());
        self.report.image = Some(image.chosen.clone());
        let c = &image.chosen;
        let line = format!(
            "booting image {} ({}) from {} ({}){}, changes in {}, init {}",
            c.name,
            c.id,
            c.device,
            c.media,
            if c.toram { ", copied to RAM" } else { "" },
            self.report.cow.as_deref().unwrap_or("?"),
            init.display()
        );
        // The report's own switch-root timing can only cover what happened up to here.
        let total = super::log::uptime() - self.started_monotonic.as_secs_f64();
        self.report.stages.push(StageTiming { stage: Stage::SwitchRoot, start: super::log::uptime(), duration_ms: 0.0 });
        let lines = BootLogger::get().map(|l| {
            l.console_always(&line);
            l.console_always(&format!("initramfs done in {:.0} ms", total * 1000.0));
            l.lines()
        });
        if let Err(e) = self.report.write(Path::new(REPORT_DIR), &lines.unwrap_or_default()) {
            ::log::warn!("could not write {REPORT_DIR}/boot.json: {e}");
        }
        super::log::restore_kmsg_ratelimit(self.kmsg_ratelimit.take());
        let mut args = systemd_handover(new_root, &init, self.started_realtime, self.started_monotonic);
        args.extend(self.settings.init_args.iter().cloned());
        let error = switch_root(new_root, &init, &args, &[]);
        Err(failure(error.to_string()))
    }
}

/// The inits tried when `init=` is not given, in the order of the field.
pub const DEFAULT_INITS: &[&str] = &["/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd", "/bin/sh"];

/// Follows `path` inside `root` as if `root` were `/` (absolute symlinks such as
/// `/sbin/init -> /lib/systemd/systemd` point into the new root, not the initramfs).
pub fn resolve_in_root(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut resolved = PathBuf::from("/");
    let mut hops = 0;
    while let Some(next) = pending.pop() {
        let mut components: Vec<Component> = next.components().collect();
        components.reverse();
        while let Some(component) = components.pop() {
            match component {
                Component::RootDir => resolved = PathBuf::from("/"),
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => {
                    let candidate = resolved.join(name);
                    let on_disk = root.join(candidate.strip_prefix("/").ok()?);
                    match std::fs::symlink_metadata(&on_disk) {
                        Ok(meta) if meta.file_type().is_symlink() => {
                            hops += 1;
                            if hops > 40 {
                                return None;
                            }
                            let target = std::fs::read_link(&on_disk).ok()?;
                            // The rest of this path continues after the link's target.
                            let rest: PathBuf = components.iter().rev().collect();
                            components.clear();
                            pending.push(rest);
                            pending.push(target);
                            break;
                        }
                        Ok(_) => resolved = candidate,
                        Err(_) => return None,
                    }
                }
            }
        }
    }
    Some(root.join(resolved.strip_prefix("/").ok()?))
}

/// The first init that exists in `root` as an executable file, as a path inside `root`.
pub fn find_init(root: &Path, wanted: Option<&Path>) -> Result<PathBuf, SwitchError> {
    let candidates: Vec<PathBuf> = match wanted {
        Some(path) => vec![path.to_path_buf()],
        None => DEFAULT_INITS.iter().map(PathBuf::from).collect(),
    };
    for candidate in &candidates {
        if let Some(real) = resolve_in_root(root, candidate) {
            if let Ok(meta) = std::fs::metadata(&real) {
                if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                    return Ok(candidate.clone());
                }
            }
        }
    }
    let tried: Vec<String> = candidates.iter().map(|c| format!("{} (missing or not executable)", c.display())).collect();
    Err(SwitchError::NoInit { tried: tried.join(", ") })
}

/// Moves /dev, /proc, /sys and /run under `new_root`, so the system keeps them (and
/// /run/viver with the media, the image and the copy-on-write layer stays visible).
pub fn move_api_mounts(new_root: &Path) -> Result<(), SwitchError> {
    for dir in ["/dev", "/proc", "/sys", "/run"] {
        let target = new_root.join(&dir[1..]);
        if !target.is_dir() {
            // A read-only root without the directory: create it if we can, else leave it.
            let _ = std::fs::create_dir_all(&target);
        }
        mount(Some(dir), &target, None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|errno| SwitchError::Move {
            from: dir.to_string(),
            to: target.display().to_string(),
            errno,
        })?;
    }
    Ok(())
}

/// Deletes the initramfs's files (everything on the rootfs device, not below `keep`).
fn free_initramfs(keep: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(root_meta) = std::fs::symlink_metadata("/") else { return };
    fn walk(dir: &Path, dev: u64, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == keep {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.dev() != dev {
                continue; // a mount point: not ours to delete
            }
            if meta.is_dir() {
                walk(&path, dev, keep);
                let _ = std::fs::remove_dir(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    walk(Path::new("/"), root_meta.dev(), keep);
}

/// Opens and reads `init` (a path inside `new_root`) and the interpreter exec will load
/// for it (a `#!` line's, an ELF's PT_INTERP, one level of each) through the new root,
/// so an unreadable image stops the boot while the initramfs, and its rescue shell, are
/// still there. Returns the files read.
pub fn read_back(new_root: &Path, init: &Path) -> Result<Vec<PathBuf>, SwitchError> {
    let mut wanted = vec![init.to_path_buf()];
    let mut read = Vec::new();
    while let Some(path) = wanted.pop() {
        if read.len() >= 4 {
            break;
        }
        let shown = path.display().to_string();
        let real = resolve_in_root(new_root, &path).ok_or_else(|| SwitchError::ReadBack {
            path: shown.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found in the new root"),
        })?;
        let bytes = std::fs::read(&real).map_err(|source| SwitchError::ReadBack { path: shown.clone(), source })?;
        read.push(path);
        if let Some(interpreter) = crate::image::needs::shebang(&bytes) {
            wanted.push(PathBuf::from(interpreter));
            continue;
        }
        let reader = |offset: u64, len: usize| -> Result<Vec<u8>, crate::image::squashfs::SquashError> {
            let start = (offset as usize).min(bytes.len());
            Ok(bytes[start..start.saturating_add(len).min(bytes.len())].to_vec())
        };
        if let Ok(Some(elf)) = crate::image::needs::elf_needs(&reader, bytes.len() as u64) {
            if let Some(interp) = elf.interp {
                wanted.push(PathBuf::from(interp));
            }
        }
    }
    Ok(read)
}

/// Makes `new_root` the root and executes `init` there with `args`. Only returns on error.
pub fn switch_root(new_root: &Path, init: &Path, args: &[String], env: &[(String, String)]) -> SwitchError {
    let sys = |what: &str, errno: nix::Error| SwitchError::Sys { what: what.to_string(), errno };
    // The point of no return is the freeing of the initramfs: before it, init and its
    // interpreter must have been read from the new root, and the rescue shell is kept
    // open so the failure policy can still start it once its file is gone.
    if let Err(e) = read_back(new_root, init) {
        return e;
    }
    super::failure::keep_rescue_shell();
    if let Err(e) = move_api_mounts(new_root) {
        return e;
    }
    free_initramfs(new_root);
    if let Err(errno) = nix::unistd::chdir(new_root) {
        return sys("chdir to the new root", errno);
    }
    if let Err(errno) = mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>) {
        return sys("moving the new root onto /", errno);
    }
    if let Err(errno) = nix::unistd::chroot(".") {
        return sys("chroot into the new root", errno);
    }
    if let Err(errno) = nix::unistd::chdir("/") {
        return sys("chdir to /", errno);
    }
    exec(init, args, env)
}

/// Replaces this process with `init`; returns only the error.
pub fn exec(init: &Path, args: &[String], env: &[(String, String)]) -> SwitchError {
    use std::os::unix::ffi::OsStrExt;
    let program = c_bytes(init.as_os_str().as_bytes());
    let mut argv = vec![program.clone()];
    argv.extend(args.iter().map(|a| c_bytes(a.as_bytes())));
    // The `_os` form: the kernel puts unknown `key=value` words of the command line into
    // init's environment, bytes that need not be UTF-8 (std::env::vars would panic).
    let envp = environment(std::env::vars_os(), env);
    match nix::unistd::execve(&program, &argv, &envp) {
        Err(errno) => SwitchError::Sys { what: format!("starting {}", init.display()), errno },
        Ok(never) => match never {},
    }
}

/// A C string of `bytes`, NULs dropped (they cannot be passed on).
fn c_bytes(bytes: &[u8]) -> CString {
    let clean: Vec<u8> = bytes.iter().copied().filter(|b| *b != 0).collect();
    CString::new(clean).unwrap_or_default()
}

/// The environment for the new init: the inherited variables as the bytes they are,
/// with `extra` added (replacing a variable of the same name).
fn environment(inherited: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>, extra: &[(String, String)]) -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    let mut out: Vec<CString> = Vec::new();
    for (key, value) in inherited {
        if extra.iter().any(|(k, _)| k.as_bytes() == key.as_bytes()) {
            continue;
        }
        let mut word = key.as_bytes().to_vec();
        word.push(b'=');
        word.extend_from_slice(value.as_bytes());
        out.push(c_bytes(&word));
    }
    out.extend(extra.iter().map(|(k, v)| c_bytes(format!("{k}={v}").as_bytes())));
    out
}

/// When the new init is systemd, the state it would have received from a systemd
/// initrd: the initrd's start as `initrd-timestamp=<realtime µs> <monotonic µs>` in a
/// memfd passed with `--deserialize`, which is how `systemd-analyze` learns the initrd
/// phase (booster's way; systemd dropped the old `RD_TIMESTAMP` variable). Returns the
/// arguments to put before the user's.
pub fn systemd_handover(new_root: &Path, init: &Path, start_realtime: Duration, start_monotonic: Duration) -> Vec<String> {
    let is_systemd = resolve_in_root(new_root, init).and_then(|real| real.file_name().map(|n| n == "systemd")).unwrap_or(false);
    if !is_systemd {
        return Vec::new();
    }
    let state = format!("initrd-timestamp={} {}\n", start_realtime.as_micros(), start_monotonic.as_micros());
    // Not close-on-exec: systemd must find it open after the exec.
    let fd = match nix::sys::memfd::memfd_create(c"systemd-state", nix::sys::memfd::MFdFlags::empty()) {
        Ok(fd) => fd,
        Err(_) => return Vec::new(),
    };
    let mut file = std::fs::File::from(fd);
    use std::io::{Seek, Write};
    if file.write_all(state.as_bytes()).is_err() || file.rewind().is_err() {
        return Vec::new();
    }
    use std::os::fd::IntoRawFd;
    let raw = file.into_raw_fd();
    vec!["--switched-root".into(), "--system".into(), "--deserialize".into(), raw.to_string()]
}

use std::time::Duration;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn executable(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_environment_keeps_bytes_that_are_not_utf8() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let inherited = vec![
            (OsString::from("PATH"), OsString::from("/bin")),
            (OsString::from("weird"), OsString::from_vec(b"a\xffb".to_vec())),
            (OsString::from("TERM"), OsString::from("dumb")),
        ];
        let env = environment(inherited.into_iter(), &[("TERM".into(), "linux".into())]);
        let words: Vec<&[u8]> = env.iter().map(|c| c.as_bytes()).collect();
        assert_eq!(words, vec![&b"PATH=/bin"[..], &b"weird=a\xffb"[..], &b"TERM=linux"[..]]);
        assert_eq!(c_bytes(b"a\0b").as_bytes(), b"ab");
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_new_root() {
        let root = tempdir("resolve");
        executable(&root.join("lib/systemd/systemd"));
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        symlink("/lib/systemd/systemd", root.join("sbin/init")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        executable(&root.join("usr/bin/sh"));
        assert_eq!(resolve_in_root(&root, Path::new("/sbin/init")), Some(root.join("lib/systemd/systemd")));
        assert_eq!(resolve_in_root(&root, Path::new("/bin/sh")), Some(root.join("usr/bin/sh")));
        assert_eq!(find_init(&root, None).unwrap(), PathBuf::from("/sbin/init"));
    }

    #[test]
    fn only_systemd_gets_the_deserialization_arguments() {
        let root = tempdir("handover");
        executable(&root.join("lib/systemd/systemd"));
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        symlink("/lib/systemd/systemd", root.join("sbin/init")).unwrap();
        executable(&root.join("bin/sh"));
        let args = systemd_handover(&root, Path::new("/sbin/init"), Duration::from_secs(1), Duration::from_millis(2500));
        assert_eq!(&args[..3], ["--switched-root", "--system", "--deserialize"]);
        let fd: i32 = args[3].parse().unwrap();
        let state = std::fs::read_to_string(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(state, "initrd-timestamp=1000000 2500000\n");
        assert!(systemd_handover(&root, Path::new("/bin/sh"), Duration::ZERO, Duration::ZERO).is_empty());
    }

    #[test]
    fn missing_or_not_executable_init_is_refused_with_what_was_tried() {
        let root = tempdir("noinit");
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        std::fs::write(root.join("sbin/init"), "not executable").unwrap();
        symlink("/nowhere", root.join("loop1")).unwrap();
        let err = find_init(&root, None).unwrap_err().to_string();
        assert!(err.contains("/sbin/init") && err.contains("/bin/sh"), "{err}");
        assert!(find_init(&root, Some(Path::new("/loop1"))).is_err());
        // A symlink loop ends, it does not hang.
        symlink("/a", root.join("b")).unwrap();
        symlink("/b", root.join("a")).unwrap();
        assert_eq!(resolve_in_root(&root, Path::new("/a")), None);
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("viver-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
