//! `viver kit ...` (placeholder until the kit lands).
#[derive(clap::Subcommand)]
pub enum KitCommand {}
pub fn run(cmd: KitCommand) -> i32 { match cmd {} }
