//! End to end: a selector claim (`spec.clusterSelector`) against the simulator. It reaches
//! the clusters whose labels match and no other (fifty of them as readily as two); a
//! cluster relabelled out of it has that claim's objects pruned, in the safe order, and
//! nothing else deleted anywhere; cluster files added get it through their rollout waves;
//! relabelling most of the fleet out at once is refused by the mass-prune guard.

use std::time::Duration;

use fleet_core::testing::{cluster, fleet, selector_claim, wave, Claim};
use psql_fleet::status::{RolloutStatus, StatusReport, WaveStatus};
use test_support::audit::{agent_release_writes, assert_pruned_in_safe_order, deletes};
use test_support::{until, AgentOptions, SimFleet};

/// Claim `db` for every prod cluster, in a namespace of its own so that the safe prune
/// order can be asserted by namespace.
fn db() -> Claim {
    selector_claim("db", &[("env", "prod")])
        .namespace("db")
        .install_namespace("db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_claim_reaches_matching_clusters_and_leaves_one_relabelled_out() {
    let f = SimFleet::start(3, Duration::from_millis(300)).await;
    let (a, b, c) = (f.names[0].clone(), f.names[1].clone(), f.names[2].clone());
    for (name, env) in [(&a, "prod"), (&b, "prod"), (&c, "dev")] {
        f.put(&cluster(name).label("env", env));
        f.namespace(name, "db").await;
    }
    f.put(&db());
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_ready(&[(&a, 1), (&b, 1), (&c, 0)]).await;
    assert_eq!(f.live_objects(&a).len(), 3, "{:?}", f.live_objects(&a));
    assert_eq!(f.live_objects(&b).len(), 3, "{:?}", f.live_objects(&b));
    assert!(f.live_objects(&c).is_empty(), "{:?}", f.live_objects(&c));
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());

    // b stops matching: its copy of the claim goes, and only that.
    let mark = f.audit(&b).len();
    f.put(&cluster(&b).label("env", "staging"));
    agent
        .wait_for("b to carry no claim", |r| r.clusters[&b].claims.is_empty())
        .await;
    until("b's three deletes", || async {
        deletes(&f.audit(&b)[mark..]).len() == 3
    })
    .await;
    assert_pruned_in_safe_order(&f.audit(&b)[mark..], "db");
    // The simulated provider finalises a deleted Release before it goes.
    until("b's objects to be gone", || async {
        f.live_objects(&b).is_empty()
    })
    .await;
    agent.wait_ready(&[(&a, 1), (&c, 0)]).await;
    let deleted = f.deletions();
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    assert!(deleted.iter().all(|e| e.cluster == b), "{deleted:?}");
    assert_eq!(f.live_objects(&a).len(), 3);

    // c is relabelled into it and gets the claim.
    f.put(&cluster(&c).label("env", "prod"));
    agent.wait_ready(&[(&a, 1), (&c, 1)]).await;
    assert_eq!(f.live_objects(&c).len(), 3, "{:?}", f.live_objects(&c));
    assert_eq!(f.deletions().len(), 3, "nothing more deleted");
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_claim_reaches_fifty_clusters() {
    let f = SimFleet::start(50, Duration::from_millis(200)).await;
    for name in &f.names {
        f.put(&cluster(name).label("env", "prod"));
    }
    f.put(&selector_claim("db", &[("env", "prod")]));
    let agent = f.start_agent(AgentOptions::default()).await;
    let want: Vec<(&str, usize)> = f.names.iter().map(|n| (n.as_str(), 1)).collect();
    let report = agent.wait_ready(&want).await;
    for name in &f.names {
        let claims = &report.clusters[name].claims;
        assert_eq!(claims[0].claim, "default/db", "{name}: {claims:?}");
        assert_eq!(f.live_objects(name).len(), 3, "{name}");
    }
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

fn at(time: &str) -> jiff::Timestamp {
    time.parse()
        .unwrap_or_else(|e| panic!("{time:?} is no timestamp: {e}"))
}

/// The wave `name` of `rollout`.
fn wave_named<'a>(rollout: &'a RolloutStatus, name: &str) -> &'a WaveStatus {
    rollout.waves.iter().find(|w| w.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_files_added_get_the_claim_through_their_waves() {
    let f = SimFleet::start(4, Duration::from_millis(200)).await;
    let [dev, prod, new_dev, new_prod] = [0, 1, 2, 3].map(|i| f.names[i].clone());
    f.put(
        &fleet("main")
            .wave(
                wave("dev", &[("env", "dev")])
                    .bake_time("2s")
                    .timeout("20s"),
            )
            .wave(wave("prod", &[("env", "prod")]).timeout("20s")),
    );
    let labelled = |name: &str, env: &str| cluster(name).label("env", env).label("stack", "psql");
    f.put(&labelled(&dev, "dev"));
    f.put(&labelled(&prod, "prod"));
    f.remove_doc(&cluster(&new_dev));
    f.remove_doc(&cluster(&new_prod));
    f.put(&selector_claim("db", &[("stack", "psql")]));
    let agent = f
        .start_agent(AgentOptions {
            interval: Some(Duration::from_secs(5)),
            ..AgentOptions::default()
        })
        .await;
    let complete = |s: &StatusReport, clusters: &[&String], after: Option<&str>| {
        s.rollout
            .as_ref()
            .is_some_and(|r| r.phase == "complete" && after.is_none_or(|a| r.revision != a))
            && clusters.iter().all(|c| {
                s.clusters
                    .get(*c)
                    .is_some_and(|c| c.claims.len() == 1 && c.claims.iter().all(|c| c.ready))
            })
    };
    let first = agent
        .wait_for("the first revision everywhere", |s| {
            complete(s, &[&dev, &prod], None)
        })
        .await
        .rollout
        .unwrap()
        .revision;
    assert!(f.live_objects(&new_dev).is_empty());
    assert!(f.live_objects(&new_prod).is_empty());

    // A dev and a prod cluster join in one change: the claim reaches the prod one only
    // once the dev one is ready and has baked.
    f.put(&labelled(&new_dev, "dev"));
    f.put(&labelled(&new_prod, "prod"));
    let done = agent
        .wait_for("the new clusters served", |s| {
            complete(s, &[&new_dev, &new_prod], Some(&first))
        })
        .await;
    for c in [&new_dev, &new_prod] {
        assert_eq!(f.live_objects(c).len(), 3, "{c}: {:?}", f.live_objects(c));
    }
    let rollout = done.rollout.unwrap();
    let (dev_wave, prod_wave) = (wave_named(&rollout, "dev"), wave_named(&rollout, "prod"));
    assert_eq!(
        dev_wave.clusters,
        std::slice::from_ref(&new_dev),
        "{rollout:?}"
    );
    assert_eq!(
        prod_wave.clusters,
        std::slice::from_ref(&new_prod),
        "{rollout:?}"
    );
    let dev_done = at(dev_wave.finished_at.as_deref().unwrap());
    let dev_ready = at(dev_wave.ready_since.as_deref().unwrap());
    assert!(
        dev_done.duration_since(dev_ready) >= jiff::SignedDuration::from_secs(2),
        "{dev_wave:?}"
    );
    assert!(
        at(prod_wave.started_at.as_deref().unwrap()) >= dev_done,
        "{rollout:?}"
    );
    // The audit log says the same: the new prod cluster's first write comes after every
    // write to the new dev cluster, and not before dev's bake ended (the log keeps whole
    // seconds).
    let all = f.audit_all();
    let writes = agent_release_writes(&all);
    let last_dev = writes.iter().rposition(|w| w.cluster == new_dev);
    let first_prod = writes.iter().position(|w| w.cluster == new_prod);
    assert!(
        matches!((last_dev, first_prod), (Some(d), Some(p)) if d < p),
        "{writes:?}"
    );
    let baked = jiff::Timestamp::from_second(dev_done.as_second()).unwrap();
    assert!(
        writes
            .iter()
            .filter(|w| w.cluster == new_prod)
            .all(|w| at(&w.time) >= baked),
        "a write to {new_prod} before dev finished baking at {dev_done}: {writes:?}"
    );
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabelling_most_of_the_fleet_out_of_a_selector_is_refused() {
    let f = SimFleet::start(4, Duration::from_millis(200)).await;
    for name in &f.names {
        f.put(&cluster(name).label("env", "prod"));
        f.namespace(name, "db").await;
    }
    f.put(&db());
    let agent = f.start_agent(AgentOptions::default()).await;
    let want: Vec<(&str, usize)> = f.names.iter().map(|n| (n.as_str(), 1)).collect();
    let served = agent.wait_ready(&want).await.source.revision;

    // Three of four clusters relabelled in one change: the revision is refused whole.
    for name in &f.names[1..] {
        f.put(&cluster(name).label("env", "staging"));
    }
    agent.wait_mass_prune_refused(&served, 3, 4).await;
    agent
        .assert_holds_for_passes(
            "every copy of the claim to stay",
            &f.names[1],
            2,
            || async {
                let r = agent.report().await;
                f.names.iter().all(|n| r.clusters[n].claims.len() == 1)
            },
        )
        .await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());

    // Two of them back: one cluster leaving is within the guard, and goes in the safe order.
    let out = f.names[1].clone();
    let mark = f.audit(&out).len();
    for name in &f.names[2..] {
        f.put(&cluster(name).label("env", "prod"));
    }
    until("the relabelled cluster's three deletes", || async {
        deletes(&f.audit(&out)[mark..]).len() == 3
    })
    .await;
    assert_pruned_in_safe_order(&f.audit(&out)[mark..], "db");
    let deleted = f.deletions();
    assert!(deleted.iter().all(|e| e.cluster == out), "{deleted:?}");
    agent.stop().await;
    f.shutdown().await;
}
