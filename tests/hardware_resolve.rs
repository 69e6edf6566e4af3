//! Our modalias matcher against kmod (`modprobe --resolve-alias`) on the same module
//! tree: at least 2,000 real and synthesised modaliases, no difference allowed.

mod hardware_common;

use std::process::Command;
use viver::hardware::ModuleTables;

/// Modaliases of the devices QEMU gives our test machines (and some common PCs).
const REAL: &[&str] = &[
    "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // ich9 ahci
    "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", // piix3 ide
    "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", // e1000
    "pci:v00008086d000010D3sv00001AF4sd00001100bc02sc00i00", // e1000e
    "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", // virtio-net legacy
    "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", // virtio-blk legacy
    "pci:v00001AF4d00001004sv00001AF4sd00000008bc01sc00i00", // virtio-scsi
    "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00", // virtio-blk modern
    "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30", // qemu xhci
    "pci:v00008086d00002934sv00001AF4sd00001100bc0Csc03i00", // ich9 uhci
    "pci:v00008086d0000293Asv00001AF4sd00001100bc0Csc03i20", // ich9 ehci
    "pci:v00008086d000024CDsv00001AF4sd00001100bc0Csc03i20",
    "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", // qemu nvme
    "pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01", // qemu sdhci
    "pci:v00001000d00000012sv00000000sd00000000bc01sc00i00", // lsi 53c895a
    "pci:v00001000d00000060sv00001000sd00001013bc01sc04i00", // megasas
    "pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00", // rtl8139
    "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00", // std vga
    "pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00", // ich9 lpc
    "pci:v00008086d00002930sv00001AF4sd00001100bc0Csc05i00", // ich9 smbus
    "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00",
    "usb:v0627p0001d0000dc00dsc00dp00ic03isc00ip00in00", // qemu usb-tablet
    "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", // qemu usb-storage
    "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip62in00", // qemu uas
    "usb:v1D6Bp0003d0601dc09dsc00dp03ic09isc00ip00in00", // root hub
    "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00",
    "virtio:d00000001v00001AF4",
    "virtio:d00000002v00001AF4",
    "virtio:d00000008v00001AF4",
    "virtio:d00000003v00001AF4",
    "scsi:t-0x00",
    "scsi:t-0x05",
    "mmc:block",
    "sdio:c00v0271d0301",
    "acpi:PNP0303:",
    "acpi:QEMU0002:",
    "acpi:PNP0A03:",
    "acpi:ACPI0010:",
    "platform:i8042",
    "platform:serial8250",
    "platform:pcspkr",
    "hid:b0003g0001v00000627p00000001",
    "input:b0011v0001p0001eAB41-e0,1,4,11,14,k71,72,73,74,75,ram4,lsfw",
    "cpu:type:x86,ven0000fam0006mod003A:feature:,0000,0001,0002,0003,0004,0005,0006,0007,0008,0009,000B,000C,000D,000E,000F,0010,0011,0013,0017,0018,0019,001A,002B,0034,003A,003B,003D,0068,006F,0070,0072,0074,0075,0076,007D,0080,0081,0089,008C,008D,0091,0093,0094,0095,0096,0097,0099,009A,00C0,00E1,00E3,00E4,00EA,00EB",
    "of:NfooTbarCvendor,thing",
    "fs-ext4",
    "fs-squashfs",
    "fs-vfat",
    "fs-iso9660",
    "fs-overlay",
    "squashfs",
    "loop",
    "overlay",
    "block-major-7-0",
    "char-major-10-237",
    "crypto-crc32c",
    "crypto-md5",
    "fs-tracefs",
    "unix",
    "crc32c-generic",
    "nosuchthing",
    "",
    "a]b",
    "weird chars \t*?[",
    "pci:v0000808[6",
];

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n).map(|_| b"0123456789ABCDEF"[(self.next() % 16) as usize] as char).collect()
    }
}

/// A concrete string the pattern (usually) matches: '*' becomes a random hex run
/// (sometimes empty), '?' a digit, a bracket its first member.
fn instantiate(pattern: &str, rng: &mut XorShift) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                let n = (rng.next() % 9) as usize;
                out.push_str(&rng.hex(n));
            }
            '?' => out.push_str(&rng.hex(1)),
            '[' => {
                let mut first = None;
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    if first.is_none() && d != '!' && d != '^' {
                        first = Some(d);
                    }
                }
                if let Some(f) = first {
                    out.push(f);
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn kmod_resolve(base: &std::path::Path, alias: &str) -> Vec<String> {
    let out = Command::new("modprobe")
        .args(["-d"])
        .arg(base)
        .args(["-S", hardware_common::RELEASE, "-C", "/dev/null", "--resolve-alias", "--"])
        .arg(alias)
        .output()
        .expect("modprobe (kmod) must be installed");
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

#[test]
fn resolve_equals_kmod_on_2000_modaliases() {
    let release = hardware_common::depmod_reference();
    let base = release.parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let (tables, _) = ModuleTables::load(&release).unwrap();
    let (built, _) = ModuleTables::build(&hardware_common::release_dir()).unwrap();

    let mut inputs: Vec<String> = REAL.iter().map(|s| s.to_string()).collect();
    let patterns: Vec<String> = tables.aliases().map(|(p, _)| p.to_string()).collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    while inputs.len() < 2400 {
        let p = &patterns[(rng.next() % patterns.len() as u64) as usize];
        let mut s = instantiate(p, &mut rng);
        // Every fourth one gets a mutation, so near misses are tested too.
        if rng.next() % 4 == 0 && !s.is_empty() {
            let pos = (rng.next() as usize) % s.len();
            if s.is_char_boundary(pos) && s.is_char_boundary(pos + 1) {
                s.replace_range(pos..pos + 1, &rng.hex(1));
            }
        }
        inputs.push(s);
    }

    let mut differences = Vec::new();
    let mut resolved = 0;
    for alias in &inputs {
        let want = kmod_resolve(&base, alias);
        let got: Vec<String> = tables.resolve_explained(alias).into_iter().map(|m| m.module).collect();
        let got_built: Vec<String> = built.resolve_explained(alias).into_iter().map(|m| m.module).collect();
        if !want.is_empty() {
            resolved += 1;
        }
        if got != want || got_built != want {
            differences.push(format!("{alias:?}: kmod {want:?}, loaded {got:?}, built {got_built:?}"));
        }
    }
    assert!(differences.is_empty(), "{} of {} differ, e.g.:\n{}", differences.len(), inputs.len(), differences.iter().take(15).cloned().collect::<Vec<_>>().join("\n"));
    assert!(inputs.len() >= 2000 && resolved > 1500, "only {resolved} of {} resolved to something", inputs.len());
}
