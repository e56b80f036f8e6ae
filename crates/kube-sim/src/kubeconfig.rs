//! Files the simulator writes into its output directory (`SimConfig::out`, `psql-fleet sim
//! --out`): one kubeconfig per cluster (server, TLS server name, CA, bearer token), `clusters/<name>.yaml`
//! in the fleet format (SPEC 2.1), and the admin token. Written atomically, owner-only, so
//! a token rotation never shows a torn file.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use serde_json::json;

/// Deterministic labels: env spread 20% dev, 30% staging, 50% prod, region alternating,
/// mixed by the seed so that different seeds give different waves.
pub fn labels(seed: u64, index: usize) -> Vec<(String, String)> {
    let mut x = seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let env = match x % 10 {
        0 | 1 => "dev",
        2..=4 => "staging",
        _ => "prod",
    };
    let region = if (x / 10).is_multiple_of(2) {
        "eu"
    } else {
        "us"
    };
    vec![("env".into(), env.into()), ("region".into(), region.into())]
}

/// The DNS suffix of the clusters' TLS server names: a cluster is the server name
/// `<cluster>.kube-sim.test` on the simulator's one address (`.test` is reserved, RFC
/// 2606, so the name never resolves anywhere else).
pub const SERVER_DOMAIN: &str = "kube-sim.test";

/// The TLS server name (SNI) a client of `cluster` sends, its kubeconfig's
/// `tls-server-name`.
pub fn server_name(cluster: &str) -> String {
    format!("{cluster}.{SERVER_DOMAIN}")
}

/// The cluster a TLS server name addresses, if it is one of the simulator's.
pub fn cluster_of_server_name(server_name: &str) -> Option<&str> {
    server_name
        .strip_suffix(SERVER_DOMAIN)?
        .strip_suffix('.')
        .filter(|c| !c.is_empty() && !c.contains('.'))
}

pub fn cluster_name(prefix: &str, index: usize, total: usize) -> String {
    let width = total.saturating_sub(1).to_string().len().max(3);
    format!("{prefix}{index:0width$}")
}

pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    // No fsync: readers need atomicity (the rename), not crash durability, and syncing
    // 2,000 files dominated the start of a 1,000-cluster fleet.
    write_replacing(path, contents, false)
}

/// As [`write_atomic`], synced before the rename: for the one state file that must
/// survive the machine going down, not only the process.
pub fn write_durable(path: &Path, contents: &str) -> std::io::Result<()> {
    write_replacing(path, contents, true)
}

fn write_replacing(path: &Path, contents: &str, sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        if sync {
            f.sync_all()?;
        }
    }
    std::fs::rename(tmp, path)
}

/// The kubeconfig of cluster `name`: the simulator's `server` URL (no path: `kubectl get
/// --raw` drops a server URL's path) with the cluster's TLS server name, which chooses the
/// cluster.
pub fn kubeconfig(name: &str, server: &str, ca_pem: &str, token: &str) -> String {
    let user = format!("admin@{name}");
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server,
            "tls-server-name": server_name(name),
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        }}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": name, "user": user}}],
        "current-context": user,
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

pub fn cluster_file(name: &str, labels: &[(String, String)]) -> String {
    let labels: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let doc = json!({
        "apiVersion": "fleet.hops.ops.com.ai/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name, "labels": labels},
        "spec": {"kubeconfig": format!("{name}.yaml"), "context": format!("admin@{name}")},
    });
    format!(
        "# Written by psql-fleet sim; resolve spec.kubeconfig with --credentials-dir {}\n{}",
        "<the sim --out directory>",
        serde_yaml::to_string(&doc).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_deterministic_and_spread_over_the_envs() {
        assert_eq!(labels(7, 3), labels(7, 3));
        let envs: std::collections::BTreeSet<String> =
            (0..50).map(|i| labels(1, i)[0].1.clone()).collect();
        assert_eq!(envs.len(), 3);
    }

    #[test]
    fn a_server_name_names_its_cluster_and_nothing_else_does() {
        assert_eq!(server_name("sim-007"), "sim-007.kube-sim.test");
        assert_eq!(
            cluster_of_server_name("sim-007.kube-sim.test"),
            Some("sim-007")
        );
        assert_eq!(cluster_of_server_name("kube-sim.test"), None);
        assert_eq!(cluster_of_server_name(".kube-sim.test"), None);
        assert_eq!(cluster_of_server_name("a.b.kube-sim.test"), None);
        assert_eq!(cluster_of_server_name("sim-007xkube-sim.test"), None);
        assert_eq!(cluster_of_server_name("localhost"), None);
    }

    #[test]
    fn names_are_zero_padded_to_the_fleet_size() {
        assert_eq!(cluster_name("sim-", 7, 5), "sim-007");
        assert_eq!(cluster_name("sim-", 7, 10_000), "sim-0007");
    }
}
