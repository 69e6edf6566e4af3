//! What a node decides about the swarm beyond the next request: which chunks the
//! background fill asks for, what a verified chunk does to the store, which chunks a
//! leaving node must still hand over. Pure over the [`Store`] and the [`Scheduler`], so the
//! runtime ([`super::swarm`]) and the simulation ([`super::sim`]) run the same decisions.

use super::meta::Meta;
use super::schedule::{PeerKey, Scheduler, Want};
use super::store::{NotKept, Store};
use std::sync::Arc;

/// Which chunks the background fill asks for: any while the budget has room; past that,
/// only chunks held by fewer than `replicas` nodes that a more replicated held chunk can
/// make room for (and, from a leaving peer, what only leaving peers hold).
pub fn plan_fill(meta: &Meta, store: &Store, sched: &mut Scheduler, replicas: u32, leavers: &[PeerKey]) {
    let count = meta.chunk_count() as u32;
    // Replicas count nodes: a web seed holds everything and is no node of the swarm.
    let most = (0..count).filter(|&i| store.holds(i)).map(|i| sched.node_holders(i)).max();
    for i in 0..count {
        if store.holds(i) {
            continue;
        }
        let holders = sched.node_holders(i);
        let only_leaver = holders > 0 && holders as usize <= leavers.len() && leavers.iter().all(|k| sched.peer_holds(*k, i));
        let keep_worthy = store.has_room(meta, i)
            || (holders < replicas && most.is_some_and(|m| m > holders + 1))
            || (only_leaver && most.is_some_and(|m| m > 1));
        if keep_worthy {
            sched.want(i, Want::Fill);
        } else {
            sched.unwant_fill(i);
        }
    }
}

/// A verified chunk arrived: keep it if it is worth what it costs the store. Returns the
/// chunks given up for it (to announce with `lt_donthave`), or [`NotKept`] when it was
/// only read (its reader gets it; the fill stops asking for it).
pub fn keep(meta: &Meta, store: &mut Store, sched: &mut Scheduler, index: u32, data: Arc<Vec<u8>>) -> Result<Vec<u32>, NotKept> {
    let kept = store.insert(meta, index, data, |i| sched.node_holders(i));
    match &kept {
        Ok(dropped) => dropped.iter().for_each(|&d| sched.set_have(d, false)),
        Err(NotKept) => {
            sched.set_have(index, false);
            sched.unwant_fill(index);
        }
    }
    kept
}

/// The chunks this node holds that no connected peer holds: what a planned leave waits
/// to hand over.
pub fn alone(meta: &Meta, store: &Store, sched: &Scheduler) -> Vec<u32> {
    (0..meta.chunk_count() as u32).filter(|&i| store.holds(i) && sched.holders(i) == 0).collect()
}

/// Which queued request a node answers next: the one whose chunk it has sent the fewest
/// times, the oldest among those. Joiners asking at once for the same chunk (every boot
/// reads the same profile) get it one after another from each other, not all from this
/// node: by the time a second copy would be this node's turn, the first holder has it and
/// the requester has asked there instead (and cancelled here).
pub fn next_to_serve(queue: impl IntoIterator<Item = u32>, times_sent: impl Fn(u32) -> u32) -> Option<usize> {
    queue.into_iter().enumerate().min_by_key(|&(pos, index)| (times_sent(index), pos)).map(|(pos, _)| pos)
}

/// With one answering thread per connection (the runtime): the position of connection
/// `me`'s next request in `queue` (all connections' `(peer, chunk)` requests, oldest
/// first), if its chunk is among the least sent of all queued; `None`: wait, another
/// connection has a less sent chunk to answer first.
pub fn serve_pick(queue: &[(PeerKey, u32)], me: PeerKey, times_sent: impl Fn(u32) -> u32) -> Option<usize> {
    let best = next_to_serve(queue.iter().map(|r| r.1), &times_sent)?;
    let least = times_sent(queue[best].1);
    let mine = queue.iter().enumerate().filter(|(_, r)| r.0 == me).min_by_key(|&(pos, r)| (times_sent(r.1), pos))?;
    (times_sent(mine.1 .1) <= least).then_some(mine.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_sent_chunk_is_served_first_the_oldest_among_equals() {
        let sent = |i: u32| [3, 0, 1, 0][i as usize];
        assert_eq!(next_to_serve([0, 2, 3, 1], sent), Some(2), "chunk 3: never sent, asked before chunk 1");
        assert_eq!(next_to_serve([0, 0], sent), Some(0));
        assert_eq!(next_to_serve(std::iter::empty(), sent), None);
    }

    #[test]
    fn a_connection_waits_while_another_has_a_less_sent_chunk_to_answer() {
        let sent = |i: u32| [2, 0, 1][i as usize];
        let queue = [(7, 0), (8, 1), (7, 2), (8, 0)];
        assert_eq!(serve_pick(&queue, 8, sent), Some(1));
        assert_eq!(serve_pick(&queue, 7, sent), None, "chunk 1 (never sent) goes first");
        assert_eq!(serve_pick(&queue[2..], 7, sent), Some(0), "then 7's least sent: chunk 2");
        assert_eq!(serve_pick(&queue, 9, sent), None, "nothing asked");
    }
}
