//! Batches inside a wave, pure: the order a wave's clusters go in when it spreads them
//! over a label, and how its changed clusters are cut into batches. Batches are cut once,
//! when a revision's rollout begins, and kept in the rollout state, so that a restart
//! neither reshuffles them nor starts a batch over with other clusters.

use std::collections::BTreeMap;

use crate::model::share::Share;

/// `clusters` (sorted by name) interleaved over the values of their `label` (`value_of`),
/// one of each value in turn, values in sorted order, clusters without the label last
/// among equals: so that every batch cut from the front mixes the values.
pub fn spread<'a>(clusters: &[String], value_of: impl Fn(&str) -> Option<&'a str>) -> Vec<String> {
    let mut groups: BTreeMap<(bool, &str), Vec<&String>> = BTreeMap::new();
    for c in clusters {
        let value = value_of(c);
        groups
            .entry((value.is_none(), value.unwrap_or_default()))
            .or_default()
            .push(c);
    }
    let mut queues: Vec<std::vec::IntoIter<&String>> =
        groups.into_values().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(clusters.len());
    while out.len() < clusters.len() {
        for q in &mut queues {
            if let Some(c) = q.next() {
                out.push(c.clone());
            }
        }
    }
    out
}

/// `changed` (in the wave's order) in batches of `max_unavailable` of them, at least one
/// cluster each; no batches (the wave goes at once) without `max_unavailable`.
pub fn cut(changed: &[String], max_unavailable: Option<Share>) -> Vec<Vec<String>> {
    let Some(share) = max_unavailable else {
        return Vec::new();
    };
    let size = share.of(changed.len()).max(1);
    changed.chunks(size).map(<[String]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i:02}")).collect()
    }

    #[test]
    fn batches_mix_the_values_of_the_spread_label() {
        let clusters = names(6);
        // c00..c02 in eu, c03..c04 in us, c05 without a region.
        let region = |c: &str| match c {
            "c00" | "c01" | "c02" => Some("eu"),
            "c03" | "c04" => Some("us"),
            _ => None,
        };
        let order = spread(&clusters, region);
        assert_eq!(order, ["c00", "c03", "c05", "c01", "c04", "c02"]);
        let batches = cut(&order, Some(Share::Count(2)));
        assert_eq!(batches, [["c00", "c03"], ["c05", "c01"], ["c04", "c02"]]);
        for b in &batches[..2] {
            assert_ne!(region(&b[0]), region(&b[1]), "{b:?}");
        }
    }

    #[test]
    fn a_share_cuts_batches_of_at_least_one_and_none_is_one_go() {
        let clusters = names(40);
        let batches = cut(&clusters, Some(Share::Percent(25)));
        assert_eq!(batches.len(), 4);
        assert!(batches.iter().all(|b| b.len() == 10));
        assert_eq!(batches.concat(), clusters);
        assert_eq!(cut(&names(3), Some(Share::Percent(10))).len(), 3);
        assert!(cut(&clusters, None).is_empty());
        assert!(cut(&[], Some(Share::Count(2))).is_empty());
    }
}
