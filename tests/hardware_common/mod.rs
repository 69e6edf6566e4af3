//! Shared helpers for the hardware tests: the real Debian kernel tree and a
//! depmod-generated copy of its tables (the reference we must equal).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

#[path = "../kernel/mod.rs"]
mod kernel;
pub use kernel::TestKernel;

/// The unpacked harness kernel (see `tests/kernel/mod.rs`: VIVER_KERNEL_ROOT or the cache).
pub fn kernel_root() -> PathBuf {
    TestKernel::main().root
}

/// The harness kernel's release, e.g. `6.1.0-57-amd64`.
pub fn release() -> String {
    TestKernel::main().release
}

/// Its `lib/modules/<release>` (or `usr/lib/modules/<release>`).
pub fn release_dir() -> PathBuf {
    TestKernel::main().modules_dir()
}

/// A private root whose lib/modules/<release> links to the real module files and
/// holds depmod's output (the real tree is never written to). Made once per test binary.
pub fn depmod_reference() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("depmod-ref-{}", std::process::id()));
        let rel = base.join("lib/modules").join(release());
        std::fs::create_dir_all(&rel).unwrap();
        let src = release_dir();
        std::os::unix::fs::symlink(src.join("kernel"), rel.join("kernel")).unwrap();
        for f in ["modules.builtin", "modules.order", "modules.builtin.modinfo"] {
            if src.join(f).exists() {
                std::fs::copy(src.join(f), rel.join(f)).unwrap();
            }
        }
        let st = Command::new("depmod").arg("-b").arg(&base).arg(release()).status().expect("depmod (kmod) must be installed");
        assert!(st.success(), "depmod failed");
        rel
    })
    .clone()
}

/// Modaliases of the devices QEMU gives our test machines (and some common PCs).
pub const REAL: &[&str] = &[
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
