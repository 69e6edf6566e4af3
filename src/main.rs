//! One binary, two faces: PID 1 of the initramfs, or the `viver` command.

fn main() {
    // The kernel starts /init as PID 1. Anything else is a person at a shell, even when
    // the binary is called "init" (a test may run it by hand; it must not remount /proc).
    if std::process::id() == 1 {
        viver::boot::run_as_pid1();
    }
    std::process::exit(viver::cli::main());
}
