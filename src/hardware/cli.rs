//! `viver hw ...` (placeholder until the hardware engine lands).
#[derive(clap::Subcommand)]
pub enum HwCommand {}
pub fn run(cmd: HwCommand) -> i32 { match cmd {} }
