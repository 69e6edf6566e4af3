//! PID 1: the boot, stage by stage.
pub fn run_as_pid1() -> ! {
    loop { std::thread::sleep(std::time::Duration::from_secs(3600)); }
}
