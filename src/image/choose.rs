//! The order in which candidates are tried: the image the user named (or the newest),
//! from the fastest medium (or the media the user named). The first candidate that
//! passes its checks becomes the root; the others stay in the report with their reasons.

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
            Some(name) if !candidate.matches(name) => {
                plan.excluded.push((candidate, format!("not the image named by viver.image={name}")))
            }
            _ => considered.push(candidate),
        }
    }

    let media_order = |items: &mut Vec<Candidate>| {
        rank::order(items, |c: &Candidate| (&c.device, c.filesystem.as_ref()), selector);
    };
    let newest_first = |items: &mut Vec<Candidate>| items.sort_by_key(|c| (Reverse(c.created), c.id.clone()));
    if selector.is_some() {
        // The user named the media: they decide, recency only breaks ties among equals.
        newest_first(&mut considered);
        media_order(&mut considered);
    } else {
        // Same image (same id) on several media: fastest copy first, within the newest image.
        media_order(&mut considered);
        newest_first(&mut considered);
    }

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
            if selector.is_some() { " on the media named by viver.media=" } else { ", the newest" },
            others.join(", ")
        ));
    }
    plan.order = considered;
    plan
}
