//! cargo-fuzz target for the kit's PE/Authenticode header reader (`viver kit media`'s
//! unsigned-kernel warning): any byte string, read as a kernel image, must give an
//! answer, never a panic. Run: `cargo fuzz run kernel_signature` (seed: a real bzImage,
//! e.g. qemu-harness/cache/kernel/root/boot/vmlinuz-*, cut to its first 4 KiB + its tail).
#![no_main]

use libfuzzer_sys::fuzz_target;
use viver::kit::media::pe::kernel_signature;

fuzz_target!(|data: &[u8]| {
    let _ = kernel_signature(data);
});
