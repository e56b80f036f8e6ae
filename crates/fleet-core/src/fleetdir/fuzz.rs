//! The loader under arbitrary input: bytes become a fleet tree, the tree is loaded, and
//! what every input must give is checked. Shared by the cargo-fuzz target (`fuzz/`) and
//! the bounded property test that runs in `cargo test`, so both hold the loader to the
//! same promise: never a panic, and every problem names a file of the tree.

use super::{load, FileTree};

/// The paths a fuzz input's files are given, by the byte that precedes each.
const PATHS: [&str; 8] = [
    "fleet.yaml",
    "clusters/a.yaml",
    "clusters/b.yaml",
    "claims/a.yaml",
    "claims/team/b.yaml",
    "claims/c.yml",
    "fleet.yml",
    "clusters/a.yml",
];

/// Splits `data` at `0xFF` bytes; each piece's first byte picks its path from `PATHS` and
/// the rest is its contents (a later piece for the same path replaces an earlier one).
pub fn tree_from_bytes(data: &[u8]) -> FileTree {
    let mut tree = FileTree::default();
    for piece in data.split(|b| *b == 0xFF) {
        if let Some((first, contents)) = piece.split_first() {
            tree.insert(PATHS[usize::from(*first) % PATHS.len()], contents.to_vec());
        }
    }
    tree
}

/// Which part of the loader's promise a tree broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("refused without an error")]
    RefusedWithoutError,
    #[error("loaded despite {0} errors")]
    LoadedDespiteErrors(usize),
    #[error("diagnostic names no file of the tree: {0}")]
    NamesNoFile(String),
}

/// Loads `tree` and checks the loader's promise.
pub fn check(tree: &FileTree) -> Result<(), Broken> {
    let outcome = load(tree);
    let errors: Vec<_> = outcome.errors().collect();
    if outcome.fleet.is_none() && errors.is_empty() {
        return Err(Broken::RefusedWithoutError);
    }
    if outcome.fleet.is_some() && !errors.is_empty() {
        return Err(Broken::LoadedDespiteErrors(errors.len()));
    }
    for d in &outcome.diagnostics {
        // "." is the fleet directory itself, named when it holds no fleet file at all.
        let named = d.file == "."
            || tree.files.contains_key(&d.file)
            || tree
                .files
                .keys()
                .any(|path| path.starts_with(&format!("{}/", d.file)));
        if !named {
            return Err(Broken::NamesNoFile(d.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEED: &[&str] = &[
        "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {name: f}\nspec:\n  pins: {stackgres-operator: 1.18.4}\n  prune: {maxFraction: 0.5}\n",
        "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata:\n  name: a\n  labels: {env: dev}\nspec: {kubeconfig: a.yaml}\n",
        "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: p, namespace: data}\nspec:\n  clusterName: a\n  stackgresOperator: {values: {a: [1, {b: c}]}}\n---\nkind: Psql\n",
    ];

    /// Valid files, then mutated: bytes replaced, inserted, removed, lines duplicated.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let seed = (0..SEED.len(), any::<u8>())
            .prop_map(|(i, path)| [&[path][..], SEED[i].as_bytes()].concat());
        let edit = (any::<prop::sample::Index>(), any::<u8>(), 0..4u8);
        (
            prop::collection::vec(seed, 1..5),
            prop::collection::vec(edit, 0..12),
        )
            .prop_map(|(files, edits)| {
                let mut data = files.join(&0xFF);
                for (at, byte, op) in edits {
                    if data.is_empty() {
                        break;
                    }
                    let i = at.index(data.len());
                    match op {
                        0 => data[i] = byte,
                        1 => data.insert(i, byte),
                        2 => {
                            data.remove(i);
                        }
                        _ => {
                            let line: Vec<u8> = data[i..]
                                .iter()
                                .take_while(|b| **b != b'\n')
                                .copied()
                                .collect();
                            data.splice(i..i, line);
                        }
                    }
                }
                data
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn mutated_fleets_never_panic_and_every_problem_names_a_file(data in mutated()) {
            let tree = tree_from_bytes(&data);
            prop_assert!(check(&tree).is_ok(), "{}", check(&tree).unwrap_err());
        }

        #[test]
        fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
            let tree = tree_from_bytes(&data);
            prop_assert!(check(&tree).is_ok(), "{}", check(&tree).unwrap_err());
        }
    }

    #[test]
    fn an_empty_tree_is_refused_naming_the_directory() {
        let tree = tree_from_bytes(&[]);
        assert!(load(&tree).fleet.is_none());
        assert_eq!(check(&tree), Ok(()));
    }

    #[test]
    fn the_seed_fleet_loads() {
        let data: Vec<u8> = [
            &[0u8][..],
            SEED[0].as_bytes(),
            &[0xFF, 1],
            SEED[1].as_bytes(),
            &[0xFF, 3],
            SEED[2].as_bytes(),
        ]
        .concat();
        let tree = tree_from_bytes(&data);
        assert_eq!(tree.files.len(), 3);
        // The second claim document has no spec: an error naming claims/a.yaml.
        let outcome = load(&tree);
        assert!(outcome.errors().all(|d| d.file == "claims/a.yaml"));
        assert!(check(&tree).is_ok());
    }
}
