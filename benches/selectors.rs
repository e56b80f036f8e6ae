//! Selector claims at scale (issue 14): 10,000 clusters, 20 selector claims and 1,000 named
//! claims, through what `validate` and `render` do: load and validate (the selectors
//! expanded and every cross-file rule checked over the placed claims), then render every
//! cluster to JSON objects. Run with `cargo bench --bench selectors` (or `make bench`);
//! prints min and median of several runs. `cargo test --benches` runs it once at a tenth of
//! the size. `BENCH_WRITE_FLEET=<dir>` also writes the fleet there, to time
//! `psql-fleet validate <dir>` and `render <dir>` as whole processes.

use std::time::{Duration, Instant};

use fleet_core::fleetdir::{load, FileTree};
use fleet_core::model::selector::{LabelSelector, Operator, Requirement};
use fleet_core::testing::{
    claim, claims_file, cluster, component, fleet, selector_claim, FleetFiles,
};
use psql_fleet::cli::render::render_fleet;
use serde_json::json;

const SELECTOR_CLAIMS: usize = 20;

fn labels(c: usize) -> [(&'static str, &'static str); 3] {
    [
        ("env", ["dev", "staging", "prod"][c % 3]),
        ("region", ["eu", "us", "ap", "sa"][(c / 3) % 4]),
        ("tier", if c.is_multiple_of(5) { "edge" } else { "core" }),
    ]
}

fn expression(key: &str, operator: Operator, values: &[&str]) -> Requirement {
    Requirement {
        key: key.into(),
        operator,
        values: values.iter().map(ToString::to_string).collect(),
    }
}

/// Four shapes of selector, each claim in namespaces of its own so none collide.
fn selector(j: usize) -> LabelSelector {
    let mut s = LabelSelector::default();
    match j % 4 {
        0 => {
            s.match_labels.insert("env".into(), "prod".into());
        }
        1 => {
            s.match_labels.insert("region".into(), "eu".into());
        }
        2 => {
            s.match_expressions = vec![
                expression("env", Operator::In, &["dev", "staging"]),
                expression("tier", Operator::NotIn, &["edge"]),
            ]
        }
        _ => {
            s.match_labels.insert("env".into(), "prod".into());
            s.match_expressions = vec![expression("region", Operator::Exists, &[])];
        }
    }
    s
}

fn fleet_files(clusters: usize, named: usize) -> FleetFiles {
    let mut files = FleetFiles::new().with(
        &fleet("bench")
            .pin("stackgres-operator", "1.18.4")
            .override_pins(&[("env", "dev")], &[("stackgres-operator", "1.19.0")]),
    );
    for c in 0..clusters {
        let mut doc = cluster(&format!("c{c:05}"));
        for (k, v) in labels(c) {
            doc = doc.label(k, v);
        }
        files.add(&doc);
    }
    for j in 0..SELECTOR_CLAIMS {
        let ns = format!("platform{j}");
        let doc = selector_claim(&format!("p{j}"), &[])
            .cluster_selector(selector(j))
            .namespace(&ns)
            .install_namespace(&ns)
            .stackgres(component().values(json!({"deploy": {"restapi": false}})))
            .customize(
                &[("region", "eu")],
                Some(json!({"adminui": {"service": {"type": "LoadBalancer"}}})),
                None,
            )
            .customize(
                &[("tier", "edge")],
                None,
                Some(json!({"prewarmDevDB": false})),
            );
        files.add(&doc);
    }
    let named_claims = (0..named).map(|i| {
        claim("app", &format!("c{:05}", i * (clusters / named)))
            .namespace("apps")
            .install_namespace("apps")
    });
    files.add(&claims_file("claims/named.yaml", named_claims.collect()));
    files
}

fn write(dir: &std::path::Path, files: &FleetFiles) {
    for (path, text) in files.files() {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    }
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
    let bench = std::env::args().any(|a| a == "--bench");
    let (runs, clusters, named) = if bench {
        (5, 10_000, 1_000)
    } else {
        (1, 1_000, 100)
    };
    let files = fleet_files(clusters, named);
    // To time the commands as whole processes on the same fleet.
    if let Some(dir) = std::env::var_os("BENCH_WRITE_FLEET") {
        write(std::path::Path::new(&dir), &files);
    }
    let tree: FileTree = files.tree();
    let (load_min, load_median) = time(runs, || load(&tree));
    let outcome = load(&tree);
    let fleet = outcome.fleet.expect("the benchmark fleet is valid");
    let placed = fleet.claims.len();
    assert!(placed > named + SELECTOR_CLAIMS, "{placed} claims placed");
    let (render_min, render_median) = time(runs, || render_fleet(&fleet, None, true));
    let objects: usize = render_fleet(&fleet, None, true)
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(objects, placed * 3);
    println!("| step | clusters | claim documents | claims placed | objects | min | median |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let documents = named + SELECTOR_CLAIMS;
    println!(
        "| load + validate (selectors expanded) | {clusters} | {documents} | {placed} | - | {load_min:.2?} | {load_median:.2?} |"
    );
    println!(
        "| render (JSON objects) | {clusters} | {documents} | {placed} | {objects} | {render_min:.2?} | {render_median:.2?} |"
    );
}
