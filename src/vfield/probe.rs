//! Asking one peer what it serves, without joining: the manifest (a joiner that knows only
//! an address), what the peer holds, its numbers, and the peers it knows. `viver vfield
//! status` probes every peer this way; a joiner probes its bootstrap for the manifest.

use super::meta::Meta;
use super::wire::{self, Handshake, ManifestMessage, Message, PeerInfo, MANIFEST_PIECE};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct Probe {
    pub addr: SocketAddr,
    pub info_hash: [u8; 20],
    pub info: PeerInfo,
    /// Raw bitfield and later haves/donthaves, applied by [`Probe::held`].
    bitfield: Vec<u8>,
    haves: Vec<(u32, bool)>,
    pub peers: Vec<SocketAddr>,
    pub manifest: Option<Vec<u8>>,
}

impl Probe {
    pub fn held(&self, count: usize) -> Vec<bool> {
        let mut held = wire::parse_bitfield(&self.bitfield, count).unwrap_or_else(|_| vec![false; count]);
        for &(i, h) in &self.haves {
            if let Some(slot) = held.get_mut(i as usize) {
                *slot = h;
            }
        }
        held
    }
}

/// Talks to `addr` for at most `wait`: the handshake (all-zero info hash unless `expect`
/// is given), the extension handshake and bitfield; the manifest when `want_manifest`;
/// and, when `want_peers`, the peers it knows (its first PEX message).
pub fn probe(addr: SocketAddr, expect: Option<[u8; 20]>, want_manifest: bool, want_peers: bool, wait: Duration) -> Result<Probe, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| format!("{addr}: {e}"))?;
    let until = Instant::now() + wait;
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(wait.max(Duration::from_millis(100)))).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut id = *b"-VV0001-probe0000000";
    id[14..].copy_from_slice(&std::process::id().to_be_bytes().repeat(2)[..6]);
    writer.write_all(&Handshake::new(expect.unwrap_or([0; 20]), id).encode()).map_err(|e| format!("{addr}: {e}"))?;
    let theirs = Handshake::read(&mut reader).map_err(|e| format!("{addr}: {e}"))?;
    if expect.is_some_and(|h| h != theirs.info_hash) {
        return Err(format!("{addr} serves another swarm"));
    }
    let hello = wire::extension_handshake(&PeerInfo { client: "viver vfield status".into(), ..Default::default() });
    Message::Extended { id: 0, payload: hello }.write(&mut writer).map_err(|e| format!("{addr}: {e}"))?;
    let mut probe = Probe {
        addr,
        info_hash: theirs.info_hash,
        info: PeerInfo::default(),
        bitfield: Vec::new(),
        haves: Vec::new(),
        peers: Vec::new(),
        manifest: None,
    };
    let mut manifest: Vec<u8> = Vec::new();
    let mut manifest_id = 0u8;
    let mut got_hello = false;
    let mut got_pex = false;
    loop {
        let done = got_hello && (!want_manifest || probe.manifest.is_some()) && (!want_peers || got_pex);
        if done || Instant::now() >= until {
            break;
        }
        let message = match Message::read(&mut reader) {
            Ok(m) => m,
            Err(wire::WireError::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            Err(e) => return Err(format!("{addr}: {e}")),
        };
        match message {
            Message::Bitfield(bits) => probe.bitfield = bits,
            Message::Have(i) => probe.haves.push((i, true)),
            Message::Extended { id: 0, payload } => {
                let (info, ids) = wire::parse_extension_handshake(&payload).map_err(|e| format!("{addr}: {e}"))?;
                manifest_id = ids.manifest;
                if want_manifest && probe.manifest.is_none() {
                    if manifest_id == 0 || info.manifest_size == 0 || info.manifest_size > wire::MAX_MANIFEST as u64 {
                        return Err(format!("{addr} offers no manifest"));
                    }
                    let pieces = (info.manifest_size as usize).div_ceil(MANIFEST_PIECE);
                    for piece in 0..pieces as u32 {
                        Message::Extended { id: manifest_id, payload: ManifestMessage::Request { piece }.encode() }
                            .write(&mut writer)
                            .map_err(|e| format!("{addr}: {e}"))?;
                    }
                    manifest = Vec::with_capacity(info.manifest_size as usize);
                }
                probe.info = info;
                got_hello = true;
            }
            Message::Extended { id: wire::EXT_PEX, payload } => {
                probe.peers = wire::parse_pex(&payload).map_err(|e| format!("{addr}: {e}"))?;
                got_pex = true;
            }
            Message::Extended { id: wire::EXT_DONTHAVE, payload } if payload.len() == 4 => {
                probe.haves.push((u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]), false));
            }
            Message::Extended { id: wire::EXT_MANIFEST, payload } if manifest_id != 0 => match ManifestMessage::decode(&payload) {
                Ok(ManifestMessage::Data { piece, total_size, data }) => {
                    if total_size != probe.info.manifest_size || piece as usize * MANIFEST_PIECE != manifest.len() {
                        return Err(format!("{addr}: manifest piece {piece} out of order or of another size"));
                    }
                    manifest.extend_from_slice(&data);
                    if manifest.len() as u64 >= total_size {
                        manifest.truncate(total_size as usize);
                        probe.manifest = Some(std::mem::take(&mut manifest));
                    }
                }
                Ok(ManifestMessage::Reject { piece }) => return Err(format!("{addr} refused manifest piece {piece}")),
                Ok(ManifestMessage::Request { .. }) => {}
                Err(e) => return Err(format!("{addr}: {e}")),
            },
            _ => {}
        }
    }
    if want_manifest && probe.manifest.is_none() {
        return Err(format!("{addr}: no manifest within {wait:?}"));
    }
    Ok(probe)
}

/// The manifest a bootstrap peer serves, checked to be the swarm its handshake names.
pub fn fetch_meta(addr: SocketAddr, wait: Duration) -> Result<Meta, String> {
    let probe = probe(addr, None, true, false, wait)?;
    let text = probe.manifest.unwrap_or_default();
    let meta = Meta::from_text(text, &format!("the manifest from {addr}"))?;
    if meta.wire_hash() != probe.info_hash {
        return Err(format!("{addr} sent a manifest that is not the swarm it named in its handshake"));
    }
    Ok(meta)
}
