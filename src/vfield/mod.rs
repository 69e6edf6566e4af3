//! V-FIELD: the image shared peer to peer. Every node holds verified chunks of the image
//! and serves them; a node reads what it needs from several peers at once, in the order
//! its boot needs it; the swarm keeps every chunk on several nodes so that any node, the
//! first included, may leave.
//!
//! - [`bencode`]: BEP 3's value format (extension messages, `.torrent`);
//! - [`wire`]: the BitTorrent peer protocol, with V-FIELD's extension messages;
//! - [`meta`]: the swarm's description (the manifest; info hash; `.torrent`);
//! - [`policy`]: what to fill, keep and hand over (pure, shared with the simulation);
//! - [`sim`]: the swarm at scale in simulated time, running the real scheduler and policy;
//! - [`store`]: what a node holds, within its budget, kept by replica count;
//!   [`disk_store`]: the same on a disk or partition the user named;
//! - [`schedule`]: which chunk to ask of which peer (pure, shared with the simulation);
//! - [`swarm`]: a peer at run time (connections, threads, the block device's reads);
//! - [`lsd`]: the LAN announcement (BEP 14 Local Service Discovery), wire and state
//!   machine; [`lan`]: the same on a multicast socket;
//! - [`probe`]: asking a peer what it serves without joining (`status`, bootstrap);
//! - [`cli`]: `viver vfield`.

pub mod bencode;
pub mod cli;
pub mod disk_store;
pub mod lan;
pub mod lsd;
pub mod meta;
pub mod policy;
pub mod probe;
pub mod schedule;
pub mod sim;
pub mod store;
pub mod swarm;
pub mod wire;
