//! The boot server seeds the image it serves into V-FIELD, so that its clients read the
//! image from each other and from it, and the iPXE script tells them where to join
//! (`viver.vfield=ADDRESS:PORT`). The seed reads the open image file and checks every
//! chunk against the manifest before serving it, as any V-FIELD seed does.

use super::files::{Served, Source};
use crate::vfield::meta::Meta;
use crate::vfield::store::Store;
use crate::vfield::swarm::{Options, Swarm};
use std::net::SocketAddr;
use std::sync::Arc;

/// Starts seeding `served`'s image on `listen`; an image without a manifest (no chunk
/// hashes to check against) is not seeded.
pub fn start(served: &Served, listen: SocketAddr) -> Result<Arc<Swarm>, String> {
    let manifest = served.manifest.as_ref().ok_or("the image has no manifest beside it, whose chunk hashes V-FIELD needs")?;
    let text = manifest.read_all().map_err(|e| format!("{}: {e}", manifest.label))?;
    let meta = Meta::from_text(text.to_vec(), &manifest.label)?;
    let file = match &served.image.source {
        Source::Open(file) => file.try_clone().map_err(|e| format!("{}: {e}", served.image.label))?,
        _ => return Err(format!("{} is not a whole file", served.image.label)),
    };
    let store = Store::open_file(file, served.image.label.clone());
    let swarm = Swarm::new(Arc::new(meta), store, Options { listen: Some(listen), lan: true, ..Default::default() });
    swarm.start()?;
    Ok(swarm)
}
