//! The boot profile: the image's chunks in the order a boot first read them.
//!
//! A netbooted node records one with `viver.vfield.record` (the daemon notes each chunk
//! the block device reads for the first time, see [`crate::nbd::source::record`]) and
//! leaves it in `/run/viver/vfield-profile.toml`:
//!
//! ```toml
//! image = "3f9c0a6b5e7d1c24"    # the manifest id the recording was made with
//! chunk_size = 262144
//! seconds = 120                  # how long the recording watched the reads
//! chunks = [0, 1, 412, 413, 7]   # chunk indices, first read first
//! ```
//!
//! `viver-kit profile IMAGE FILE` ships it in the image's manifest as a `[profile]`
//! section (`seconds`, `chunks`), and every V-FIELD node of that image asks for those
//! chunks right after the ones a read is blocked on, so a new node prefetches what its
//! boot will read, in the order it will read it.
//!
//! One parser for both: [`Profile`] is the manifest's section, [`Recorded`] the file,
//! and both are validated against the image's chunk count by [`Profile::validate`].

use serde::{Deserialize, Serialize};

/// The file a recording daemon writes, in `/run/viver`.
pub const RECORDED_FILE: &str = "vfield-profile.toml";

/// The manifest's `[profile]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Seconds of the boot the recording watched.
    pub seconds: u64,
    /// Chunk indices, first read first; each at most once.
    pub chunks: Vec<u32>,
}

/// A recording as the daemon writes it: the profile and what it was recorded against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The manifest id of the image the boot read.
    pub image: String,
    /// The chunk size the indices count in.
    pub chunk_size: u64,
    pub seconds: u64,
    pub chunks: Vec<u32>,
}

impl Profile {
    /// Every index names a chunk of the image, none twice.
    pub fn validate(&self, chunk_count: u64) -> Result<(), String> {
        let mut seen = vec![false; usize::try_from(chunk_count).map_err(|_| "the image has too many chunks".to_string())?];
        for (pos, &index) in self.chunks.iter().enumerate() {
            match seen.get_mut(index as usize) {
                None => return Err(format!("profile entry {pos} is chunk {index}, the image has {chunk_count} chunks")),
                Some(true) => return Err(format!("profile entry {pos} names chunk {index} a second time")),
                Some(slot) => *slot = true,
            }
        }
        Ok(())
    }
}

impl Recorded {
    /// Parses a recording; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Recorded, String> {
        let recorded: Recorded = toml::from_str(text).map_err(|e| format!("{origin}: not a VIVER boot profile: {e}"))?;
        if recorded.chunk_size == 0 {
            return Err(format!("{origin}: chunk_size 0"));
        }
        Ok(recorded)
    }

    pub fn to_toml(&self) -> String {
        let head = format!(
            "# The order in which a boot first read the image's chunks (viver.vfield.record).\n\
             # Ship it with the image: viver-kit profile IMAGE THIS-FILE\n\
             image = {:?}\nchunk_size = {}\nseconds = {}\n",
            self.image, self.chunk_size, self.seconds
        );
        // Ten indices a line: a profile of thousands of chunks stays readable.
        let lines: Vec<String> =
            self.chunks.chunks(10).map(|row| format!("  {},", row.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))).collect();
        if lines.is_empty() {
            format!("{head}chunks = []\n")
        } else {
            format!("{head}chunks = [\n{}\n]\n", lines.join("\n"))
        }
    }

    /// The manifest's section, if the recording was made against this image's bytes
    /// (`id`) cut the same way (`chunk_size`, `chunk_count`).
    pub fn for_image(&self, id: &str, chunk_size: u64, chunk_count: u64) -> Result<Profile, String> {
        if self.image != id {
            return Err(format!("the profile was recorded with image {}, not {id}", self.image));
        }
        if self.chunk_size != chunk_size {
            return Err(format!("the profile counts chunks of {} bytes, the image's are {chunk_size}", self.chunk_size));
        }
        let profile = Profile { seconds: self.seconds, chunks: self.chunks.clone() };
        profile.validate(chunk_count)?;
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(chunks: Vec<u32>) -> Recorded {
        Recorded { image: "3f9c0a6b5e7d1c24".into(), chunk_size: 262144, seconds: 120, chunks }
    }

    #[test]
    fn a_recording_reads_back_as_written() {
        for chunks in [vec![], vec![5], (0..37).rev().collect()] {
            let r = recorded(chunks);
            assert_eq!(Recorded::parse(&r.to_toml(), "t").unwrap(), r);
        }
    }

    #[test]
    fn a_recording_fits_only_the_image_it_was_made_with() {
        let r = recorded(vec![3, 0, 9]);
        assert_eq!(r.for_image("3f9c0a6b5e7d1c24", 262144, 10).unwrap().chunks, [3, 0, 9]);
        assert!(r.for_image("0000000000000000", 262144, 10).unwrap_err().contains("recorded with image 3f9c0a6b5e7d1c24"));
        assert!(r.for_image("3f9c0a6b5e7d1c24", 1 << 20, 10).unwrap_err().contains("chunks of 262144 bytes"));
        assert!(r.for_image("3f9c0a6b5e7d1c24", 262144, 9).unwrap_err().contains("chunk 9, the image has 9"));
    }

    #[test]
    fn a_chunk_named_twice_is_refused() {
        let p = Profile { seconds: 1, chunks: vec![1, 2, 1] };
        assert_eq!(p.validate(4).unwrap_err(), "profile entry 2 names chunk 1 a second time");
    }

    #[test]
    fn malformed_recordings_get_a_clear_error() {
        for text in ["", "image = 1", "image = \"a\"\nchunk_size = 0\nseconds = 1\nchunks = []", "chunks = [-1]"] {
            assert!(Recorded::parse(text, "f").unwrap_err().starts_with("f: "), "{text:?}");
        }
        let extra = format!("{}extra = 1\n", recorded(vec![]).to_toml());
        assert!(Recorded::parse(&extra, "f").is_err(), "unknown keys are refused");
    }
}
