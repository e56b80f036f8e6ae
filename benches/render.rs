//! Render throughput: 10,000 claims across 1,000 clusters, from parsed fleet to JSON
//! objects, the work `render`, `plan` and every reconcile pass repeat. Run with
//! `cargo bench --bench render` (or `make bench`); prints min and median of several runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_core::fleetdir::{load, FileTree};
use fleet_core::testing::{claim, claims_file, cluster, component, fleet, FleetFiles};
use psql_fleet::cli::render::render_fleet;
use serde_json::json;

const CLUSTERS: usize = 1_000;
const CLAIMS_PER_CLUSTER: usize = 10;

fn fleet_tree() -> FileTree {
    let mut files = FleetFiles::new().with(
        &fleet("bench")
            .pin("stackgres-operator", "1.18.4")
            .override_pins(&[("env", "dev")], &[("stackgres-operator", "1.19.0")]),
    );
    for c in 0..CLUSTERS {
        let name = format!("c{c:04}");
        files.add(&cluster(&name).label("env", ["dev", "staging", "prod"][c % 3]));
        let claims = (0..CLAIMS_PER_CLUSTER)
            .map(|i| {
                claim(&format!("db{i}"), &name)
                    .namespace(&format!("team{i}"))
                    // Charts of claims in different namespaces install apart: one Helm
                    // release per name and namespace on a cluster.
                    .install_namespace(&format!("team{i}"))
                    .label("team", &format!("t{i}"))
                    .stackgres(component().values(json!({
                        "deploy": {"restapi": false},
                        "adminui": {"service": {"type": "ClusterIP"}}
                    })))
            })
            .collect();
        files.add(&claims_file(&format!("claims/{name}.yaml"), claims));
    }
    files.tree()
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    samples.sort();
    (samples[0], samples[runs / 2])
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; keep that quick.
    let runs = if std::env::args().any(|a| a == "--bench") {
        7
    } else {
        1
    };
    let tree = fleet_tree();
    let (load_min, load_median) = time(runs, || load(&tree));
    let fleet = load(&tree).fleet.expect("the benchmark fleet is valid");
    assert_eq!(fleet.claims.len(), CLUSTERS * CLAIMS_PER_CLUSTER);
    let (render_min, render_median) = time(runs, || render_fleet(&fleet, None, true));
    let rendered: BTreeMap<_, _> = render_fleet(&fleet, None, true);
    let objects: usize = rendered.values().map(Vec::len).sum();
    println!("| step | claims | clusters | objects | min | median |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| load + validate | {} | {CLUSTERS} | - | {load_min:.2?} | {load_median:.2?} |",
        fleet.claims.len()
    );
    println!(
        "| render (JSON objects) | {} | {CLUSTERS} | {objects} | {render_min:.2?} | {render_median:.2?} |",
        fleet.claims.len()
    );
}
