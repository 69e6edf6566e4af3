//! The `viver` command a person runs from a shell (not PID 1).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "viver", version, about = "Boot any PC diskless from one read-only image of an installed Linux")]
struct Cli {
    /// More output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hardware detection: what drivers this machine (or a captured /sys) needs.
    #[command(subcommand)]
    Hw(crate::hardware::cli::HwCommand),
    /// Build images, initrds and boot media (`kit/viver-kit` calls these).
    #[command(subcommand)]
    Kit(crate::kit::cli::KitCommand),
    /// Boot the LAN: DHCP/proxyDHCP + TFTP + HTTP for network-booting clients.
    Serve(crate::serve::cli::ServeArgs),
    /// A network block device from a file or an HTTP URL (kernel NBD over netlink).
    #[command(subcommand)]
    Nbd(crate::nbd::cli::NbdCommand),
    /// V-FIELD: share an image peer to peer (seed, join, fetch, status).
    Vfield(crate::vfield::cli::VfieldArgs),
    /// RUNES: run this machine's roles and their plugins in the foreground.
    Node(crate::runes::cli::NodeArgs),
    /// RUNES: the roles, plugins and interfaces of the running node.
    Roles(crate::runes::cli::RolesArgs),
    /// RUNES: send a request to an interface of the running node, print the answer.
    Ask(crate::runes::cli::AskArgs),
    /// RUNES: the nodes on the LAN that provide an interface (DNS-SD over multicast DNS).
    Find(crate::runes::cli::FindArgs),
    /// The daemon /init starts before the hand-over (not for people: /init runs it).
    #[command(hide = true)]
    Daemon {
        #[arg(long)]
        control_fd: i32,
        #[arg(long)]
        debug: bool,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    // The daemon logs to the kernel log, not to a terminal it does not have.
    if let Command::Daemon { control_fd, debug } = cli.command {
        return crate::daemon::process::main(control_fd, debug);
    }
    let level = match cli.verbose {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new().filter_level(level).parse_default_env().format_timestamp(None).init();
    match cli.command {
        Command::Hw(cmd) => crate::hardware::cli::run(cmd),
        Command::Kit(cmd) => crate::kit::cli::run(cmd),
        Command::Serve(args) => crate::serve::cli::run(args),
        Command::Nbd(cmd) => crate::nbd::cli::run(cmd),
        Command::Vfield(args) => crate::vfield::cli::run(args),
        Command::Node(args) => crate::runes::cli::run_node(args),
        Command::Roles(args) => crate::runes::cli::run_roles(args),
        Command::Ask(args) => crate::runes::cli::run_ask(args),
        Command::Find(args) => crate::runes::cli::run_find(args),
        Command::Daemon { .. } => 2,
    }
}
