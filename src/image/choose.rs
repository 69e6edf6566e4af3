//! The order in which candidates are tried: only the image named by `viver.image=` (the
//! kit's boot media name their own image this way) when one is named; the fastest medium
//! first (or the media the user named), the newest image only breaking ties between
//! media of the same speed. The early end of the disk search takes the fastest medium's
//! image too, so a boot chooses the same whether or not the search stopped early, and a
//! stick with a newer build cannot take over a boot by being newer. The first candidate
//! that passes its checks becomes the root; the others stay in the report with their
//! reasons.

use super::candidate::Candidate;
use crate::disks::rank::{self, MediaSelector};
use std::cmp::Reverse;

#[derive(Debug, Default)]
pub struct Plan {
    /// Candidates in the order to try them.
    pub order: Vec<Candidate>,
    /// Candidates that will not be tried, and why.
    pub excluded: Vec<(Candidate, String)>,
    /// Things a person should know about the choice (several different images, ...).
    pub notes: Vec<String>,
}

pub fn plan(all: Vec<Candidate>, wanted: Option<&str>, selector: Option<&MediaSelector>) -> Plan {
    let mut plan = Plan::default();
    let mut considered = Vec::new();
    for candidate in all {
        match wanted {
            Some(name) if !candidate.matches(name) => plan.excluded.push((candidate, format!("not the image named by viver.image={name}"))),
            _ => considered.push(candidate),
        }
    }

    let media_order = |items: &mut Vec<Candidate>| {
        rank::order(items, |c: &Candidate| (&c.device, c.filesystem.as_ref()), selector);
    };
    let newest_first = |items: &mut Vec<Candidate>| items.sort_by_key(|c| (Reverse(c.created), c.id.clone()));
    // The (stable) media order decides; recency only breaks ties among equal media.
    newest_first(&mut considered);
    media_order(&mut considered);

    let mut ids: Vec<(&str, &str, u64)> = Vec::new();
    for c in &considered {
        if !ids.iter().any(|(id, _, _)| *id == c.id) {
            ids.push((&c.id, &c.name, c.created));
        }
    }
    if ids.len() > 1 && wanted.is_none() {
        let others: Vec<String> = ids[1..].iter().map(|(id, name, _)| format!("{name} ({id})")).collect();
        plan.notes.push(format!(
            "{} different images found; trying {} ({}) first{}; the others: {}. Name one with viver.image=",
            ids.len(),
            ids[0].1,
            ids[0].0,
            if selector.is_some() { " on the media named by viver.media=" } else { " on the fastest medium" },
            others.join(", ")
        ));
    }
    plan.order = considered;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disks::blockdev::BlockDevice;
    use crate::disks::class::{MediaClass, Transport};
    use std::path::PathBuf;

    fn candidate(dev: &str, class: MediaClass, id: &str, created: u64) -> Candidate {
        let transport = match class {
            MediaClass::Virtio => Transport::Virtio,
            MediaClass::Usb => Transport::Usb,
            _ => Transport::Unknown,
        };
        Candidate {
            device: BlockDevice {
                name: dev.into(),
                dev_path: PathBuf::from(format!("/dev/{dev}")),
                major: 8,
                minor: 0,
                size_bytes: 1 << 30,
                partition: false,
                parent: None,
                class,
                transport,
                rotational: false,
                removable: class == MediaClass::Usb,
                read_only: false,
            },
            filesystem: None,
            image_path: PathBuf::from(format!("/run/viver/media/{dev}/viver/{id}.squashfs")),
            medium_path: "/viver/debian.squashfs".into(),
            manifest: None,
            name: "debian".into(),
            id: id.into(),
            created,
        }
    }

    fn order(plan: &Plan) -> Vec<(String, String)> {
        plan.order.iter().map(|c| (c.device.name.clone(), c.id.clone())).collect()
    }

    #[test]
    fn a_newer_image_on_a_slower_stick_does_not_take_over() {
        let all =
            vec![candidate("sda", MediaClass::Usb, "newer00000000000", 200), candidate("vda", MediaClass::Virtio, "older00000000000", 100)];
        let plan = plan(all, None, None);
        assert_eq!(order(&plan)[0], ("vda".to_string(), "older00000000000".to_string()));
        assert!(plan.notes.iter().any(|n| n.contains("fastest medium")), "{:?}", plan.notes);
    }

    #[test]
    fn the_named_image_first_then_its_fastest_copy() {
        let all = vec![
            candidate("sr0", MediaClass::Optical, "aaaaaaaaaaaaaaaa", 100),
            candidate("sda", MediaClass::Usb, "aaaaaaaaaaaaaaaa", 100),
            candidate("vda", MediaClass::Virtio, "bbbbbbbbbbbbbbbb", 300),
        ];
        let plan = plan(all, Some("aaaaaaaaaaaaaaaa"), None);
        assert_eq!(
            order(&plan),
            vec![("sda".to_string(), "aaaaaaaaaaaaaaaa".to_string()), ("sr0".to_string(), "aaaaaaaaaaaaaaaa".to_string())]
        );
        assert_eq!(plan.excluded.len(), 1);
        assert_eq!(plan.excluded[0].0.device.name, "vda");
    }

    #[test]
    fn recency_breaks_ties_between_equal_media() {
        let all = vec![
            candidate("vda", MediaClass::Virtio, "older00000000000", 100),
            candidate("vdb", MediaClass::Virtio, "newer00000000000", 200),
        ];
        assert_eq!(order(&plan(all, None, None))[0].0, "vdb");
    }
}
