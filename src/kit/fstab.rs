//! Adapting the image's copy of /etc/fstab: the booted image has no local root disk,
//! so entries naming the source machine's disks or swap would hang or fail the boot
//! (systemd waits for them). They are commented out with a note, never deleted, so the
//! person can see what was there.

const NOTE: &str = "# viver: disabled, names a local disk of the source machine:";

/// True when an fstab source names a local disk (or the entry is swap).
fn is_local_disk(source: &str, fstype: &str) -> bool {
    const PREFIXES: [&str; 9] = ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "/dev/sd", "/dev/nvme", "/dev/vd", "/dev/disk/", "/dev/hd"];
    fstype == "swap" || PREFIXES.iter().any(|p| source.starts_with(p)) || source.starts_with("/dev/mapper/")
}

/// The adapted fstab text and how many entries were disabled.
pub fn adapt(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len() + 256);
    let mut disabled = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let mut fields = trimmed.split_whitespace();
        let source = fields.next().unwrap_or("");
        let _mountpoint = fields.next();
        let fstype = fields.next().unwrap_or("");
        if !trimmed.starts_with('#') && !source.is_empty() && is_local_disk(source, fstype) {
            out.push_str(NOTE);
            out.push('\n');
            out.push('#');
            out.push_str(line);
            disabled += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    (out, disabled)
}

/// Swap files (not partitions) listed in an fstab, relative to the root, so the image
/// leaves them out.
pub fn swap_files(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match (f.first(), f.get(2)) {
                (Some(src), Some(&"swap")) if src.starts_with('/') && !src.starts_with("/dev/") => Some(src.to_string()),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_out_local_disks_and_swap_only() {
        let text = "# /etc/fstab\nUUID=abcd / ext4 errors=remount-ro 0 1\n/dev/sda2 /home ext4 defaults 0 2\n\
                    /swapfile none swap sw 0 0\ntmpfs /tmp tmpfs defaults 0 0\nserver:/export /mnt nfs defaults 0 0\n\
                    /dev/disk/by-id/x /data xfs defaults 0 0\nPARTUUID=1 /boot vfat defaults 0 0\n/dev/nvme0n1p1 /e ext4 rw 0 0\n";
        let (out, n) = adapt(text);
        assert_eq!(n, 6);
        assert!(out.contains("\ntmpfs /tmp tmpfs defaults 0 0\n"));
        assert!(out.contains("\nserver:/export /mnt nfs defaults 0 0\n"));
        assert!(out.contains("#UUID=abcd / ext4"));
        assert!(out.contains("#/swapfile none swap"));
        assert!(out.starts_with("# /etc/fstab\n"));
        for line in out.lines() {
            assert!(line.starts_with('#') || line.starts_with("tmpfs") || line.starts_with("server:"), "{line}");
        }
    }

    #[test]
    fn finds_swap_files_not_partitions() {
        let text = "/swapfile none swap sw 0 0\n/dev/sda3 none swap sw 0 0\n# /old none swap sw 0 0\n";
        assert_eq!(swap_files(text), vec!["/swapfile".to_string()]);
    }
}
