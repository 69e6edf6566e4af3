//! One binary, three faces: PID 1 of the initramfs, the kernel's module helper
//! (/sbin/modprobe links to /init), or the `viver` command.

fn main() {
    // request_module() runs /sbin/modprobe, a link to this binary: answer as modprobe.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if viver::hardware::modprobe::invoked_as_modprobe(args.first().map(|a| a.as_os_str())) {
        std::process::exit(viver::hardware::modprobe::main(args.get(1..).unwrap_or_default()));
    }
    // The kernel starts /init as PID 1. Anything else is a person at a shell, even when
    // the binary is called "init" (a test may run it by hand; it must not remount /proc).
    if std::process::id() == 1 {
        viver::boot::run_as_pid1();
    }
    std::process::exit(viver::cli::main());
}
