//! Sharding the fleet over replicas (`run --leader-elect --shards N`), decided purely.
//!
//! A cluster belongs to one of N shards by a stable hash of its name ([`shard_of`]): the
//! first 8 bytes of its SHA-256, placed with jump consistent hashing (Lamping and Veach),
//! so the answer never depends on the platform, the build or the order clusters are read
//! in, and changing N moves only the clusters that must move. Each shard is a Lease that
//! one replica holds at a time; [`plan`] says which shards a replica should give up and
//! which it should try to take, from the Leases and the live replicas it read.
//!
//! The live replicas share the shards as evenly as they can: each holds `N / live` shards,
//! and the first `N % live` of them in name order one more ([`target`]). Every replica
//! computes the same targets from the same members, so the targets add up to N: a joining
//! replica is given its share by the others releasing their extras, and a dead replica's
//! shards are free once their Leases expire. Among the shards to keep or take, a replica
//! prefers the ones that score highest for it (rendezvous hashing), so that replicas
//! reach for different free shards rather than race for the same one.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// The first 8 bytes of the SHA-256 of `parts`, joined by a NUL byte.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Jump consistent hashing: a bucket in `0..buckets` for `key`; going from n to n + 1
/// buckets moves a key only into the new bucket.
fn jump(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // The top 31 bits of the key, as the algorithm's reference implementation takes
        // them: a float in [1, 2^31].
        let r = ((key >> 33) + 1) as f64;
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / r)) as i64;
    }
    u32::try_from(b.max(0)).unwrap_or(0)
}

/// The shard of `cluster` among `shards` (at least one).
pub fn shard_of(cluster: &str, shards: u32) -> u32 {
    jump(stable_hash(&[cluster.as_bytes()]), shards.max(1))
}

/// How many of `shards` the replica `me` should hold when `members` are live: an even
/// share, one more for the first `shards % members` in name order. A replica that does
/// not see itself among the members counts itself in.
pub fn target(me: &str, members: &BTreeSet<String>, shards: u32) -> u32 {
    let mut members = members.clone();
    members.insert(me.to_string());
    let live = u32::try_from(members.len()).unwrap_or(u32::MAX);
    let rank = members.iter().position(|m| m == me).unwrap_or(0);
    let rank = u32::try_from(rank).unwrap_or(u32::MAX);
    shards / live + u32::from(rank < shards % live)
}

/// How much `me` prefers to hold `shard`: rendezvous hashing, the higher the better.
fn score(me: &str, shard: u32) -> u64 {
    stable_hash(&[me.as_bytes(), &shard.to_be_bytes()])
}

/// What a replica does with the shard Leases this round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Shards it holds beyond its share: it stops their workers, then releases them.
    pub release: Vec<u32>,
    /// Free shards it should try to take, the most preferred first.
    pub take: Vec<u32>,
}

/// The plan for `me`, given each shard's live holder (`None` when the Lease is free,
/// released or expired; `holders.len()` is the number of shards) and the live `members`.
pub fn plan(me: &str, holders: &[Option<String>], members: &BTreeSet<String>) -> Plan {
    let shards = u32::try_from(holders.len()).unwrap_or(u32::MAX);
    let want = target(me, members, shards) as usize;
    let by_preference = |mut v: Vec<u32>| {
        v.sort_by_key(|s| (std::cmp::Reverse(score(me, *s)), *s));
        v
    };
    let indexed = (0..shards).zip(holders);
    let mine = by_preference(
        indexed
            .clone()
            .filter(|(_, h)| h.as_deref() == Some(me))
            .map(|(i, _)| i)
            .collect(),
    );
    let free = by_preference(
        indexed
            .filter(|(_, h)| h.is_none())
            .map(|(i, _)| i)
            .collect(),
    );
    if mine.len() > want {
        return Plan {
            release: mine[want..].to_vec(),
            take: Vec::new(),
        };
    }
    Plan {
        release: Vec::new(),
        take: free.into_iter().take(want - mine.len()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn members(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_clusters_shard_is_fixed_by_its_name_alone() {
        // Pinned: a change here moves every fleet's clusters between replicas at upgrade.
        let pinned: Vec<u32> = ["prod-eu-1", "prod-us-1", "dev-1", "staging-1", "sim-000"]
            .iter()
            .map(|c| shard_of(c, 8))
            .collect();
        assert_eq!(
            pinned,
            vec![7, 6, 4, 5, 2],
            "as a reference implementation in Python gives"
        );
        for c in ["a", "b", "sim-017"] {
            assert_eq!(shard_of(c, 1), 0, "one shard holds everything");
            assert_eq!(shard_of(c, 0), 0, "no shards is one shard");
        }
    }

    #[test]
    fn clusters_spread_evenly_and_one_more_shard_moves_only_its_share() {
        let names: Vec<String> = (0..10_000).map(|i| format!("cluster-{i:05}")).collect();
        let mut counts = BTreeMap::new();
        for n in &names {
            *counts.entry(shard_of(n, 8)).or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), 8);
        assert!(
            counts.values().all(|c| (1_100..=1_400).contains(c)),
            "{counts:?}"
        );
        let moved: Vec<&String> = names
            .iter()
            .filter(|n| shard_of(n, 8) != shard_of(n, 9))
            .collect();
        assert!(
            moved.iter().all(|n| shard_of(n, 9) == 8),
            "a cluster moved only into the new shard"
        );
        assert!((900..=1_400).contains(&moved.len()), "{}", moved.len());
    }

    #[test]
    fn the_targets_of_the_live_members_add_up_to_the_shards() {
        for live in 1..=7 {
            let names: Vec<String> = (0..live).map(|i| format!("replica-{i}")).collect();
            let set: BTreeSet<String> = names.iter().cloned().collect();
            for shards in [1, 2, 6, 12] {
                let targets: Vec<u32> = names.iter().map(|n| target(n, &set, shards)).collect();
                assert_eq!(targets.iter().sum::<u32>(), shards, "{live} {shards}");
                let (lo, hi) = (shards / live, shards.div_ceil(live));
                assert!(targets.iter().all(|t| (lo..=hi).contains(t)), "{targets:?}");
            }
        }
        assert_eq!(target("new", &members(&["a"]), 6), 3, "it counts itself in");
    }

    #[test]
    fn a_replica_takes_free_shards_up_to_its_share_and_leaves_held_ones() {
        let holders = vec![None, Some("b".to_string()), None, None, None, None];
        let p = plan("a", &holders, &members(&["a", "b", "c"]));
        assert!(p.release.is_empty());
        assert_eq!(p.take.len(), 2);
        assert!(!p.take.contains(&1), "b's shard is b's");
        // Alone, it takes every free shard, the one held by a live holder excepted.
        let p = plan("a", &holders, &members(&["a"]));
        assert_eq!(p.take.len(), 5);
    }

    #[test]
    fn a_replica_above_its_share_releases_its_least_preferred_extras() {
        let held: Vec<Option<String>> = (0..6).map(|_| Some("a".to_string())).collect();
        let p = plan("a", &held, &members(&["a", "b"]));
        assert!(p.take.is_empty());
        assert_eq!(p.release.len(), 3);
        let kept: Vec<u32> = (0..6).filter(|s| !p.release.contains(s)).collect();
        let worst_kept = kept.iter().map(|s| score("a", *s)).min().unwrap();
        assert!(p.release.iter().all(|s| score("a", *s) < worst_kept));
        // At its share, it keeps what it has and takes nothing.
        let p = plan("a", &held, &members(&["a"]));
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn played_out_every_shard_ends_with_one_holder_through_joins_and_deaths() {
        // Rounds of every live replica planning on what the others did before it.
        fn settle(holders: &mut [Option<String>], live: &BTreeSet<String>) {
            for _ in 0..4 {
                for me in live {
                    let p = plan(me, holders, live);
                    for s in p.release {
                        holders[s as usize] = None;
                    }
                    for s in p.take {
                        holders[s as usize] = Some(me.clone());
                    }
                }
            }
        }
        let mut holders: Vec<Option<String>> = vec![None; 6];
        let mut live = members(&["a", "b", "c"]);
        let check = |holders: &[Option<String>], live: &BTreeSet<String>| {
            let mut per: BTreeMap<&str, u32> = BTreeMap::new();
            for h in holders {
                let h = h.as_deref().expect("every shard held");
                assert!(live.contains(h), "{h} is not live");
                *per.entry(h).or_default() += 1;
            }
            for m in live {
                assert_eq!(
                    per.get(m.as_str()).copied().unwrap_or(0),
                    target(m, live, 6)
                );
            }
        };
        settle(&mut holders, &live);
        check(&holders, &live);
        live.extend(["d".to_string(), "e".to_string()]);
        settle(&mut holders, &live);
        check(&holders, &live);
        // d and e die: their Leases expire, the others take their shards.
        live = members(&["a", "b", "c"]);
        for h in holders.iter_mut() {
            if h.as_deref().is_some_and(|h| !live.contains(h)) {
                *h = None;
            }
        }
        settle(&mut holders, &live);
        check(&holders, &live);
    }
}
