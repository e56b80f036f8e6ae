//! `run --verify-commits` end to end against the simulator: a revision signed by a trusted
//! key is served; an unsigned one pushed after it (one that would prune a claim) is refused
//! like a revision that does not validate: the last good one stays, nothing is deleted, and
//! the status, the log and `psql_fleet_source_revision_valid` say why.

use std::time::Duration;

use fleet_core::testing::{claim, Document};
use psql_fleet::source::git::GitRef;
use psql_fleet::source::verify::{Mode, Policy, TrustedKeys};
use psql_fleet::source::SourceSpec;
use test_support::files::FleetRepo;
use test_support::signing::{tools_present, SigningKey};
use test_support::{AgentOptions, SimFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_push_is_refused_and_the_signed_revision_stays_served() {
    if !tools_present() {
        return;
    }
    let key = SigningKey::ssh("release-bot@example.invalid");
    let trusted = key.trusted_file(&[&key]);
    let f = SimFleet::start(2, Duration::from_millis(200)).await;
    let names = f.names();
    f.claim_everywhere();
    let repo = FleetRepo::in_dir(f.fleet_dir());
    key.use_in(&repo.work);
    let signed = repo.commit_signed("two claims, signed");
    let agent = f
        .start_agent(AgentOptions {
            source: Some(SourceSpec::Git(repo.file_url())),
            reference: Some(GitRef::Branch("main".into())),
            verify: Some(Policy {
                keys: TrustedKeys::from_file(&trusted).unwrap(),
                mode: Mode::Head,
            }),
            ..AgentOptions::default()
        })
        .await;
    let report = agent.wait_converged(&names, 1).await;
    assert_eq!(report.source.revision.as_deref(), Some(signed.as_str()));
    let verified = report.source.verified.unwrap();
    assert!(
        verified.contains("signed by release-bot@example.invalid (ssh key SHA256:"),
        "{verified}"
    );

    // An unsigned commit that drops the second cluster's claim.
    std::fs::remove_file(f.fleet_dir().join(claim("app", &names[1]).path())).unwrap();
    let unsigned = repo.commit("one claim, unsigned");
    let report = agent
        .wait_for("the unsigned revision refused", |r| {
            r.source.rejected.is_some()
        })
        .await;
    let rejected = report.source.rejected.unwrap();
    assert!(
        rejected.contains(&unsigned[..12]) && rejected.contains("not signed"),
        "{rejected}"
    );
    assert_eq!(report.source.revision.as_deref(), Some(signed.as_str()));
    assert_eq!(
        agent.metric("psql_fleet_source_revision_valid", &[]).await,
        Some(0.0)
    );
    assert_eq!(
        agent
            .metric(
                "psql_fleet_source_revision_rejected",
                &[("reason", "unsigned")]
            )
            .await,
        Some(1.0)
    );
    agent
        .assert_holds_for_passes(
            "the unsigned revision changes nothing",
            &names[1],
            2,
            || async { f.deletions().is_empty() },
        )
        .await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    let report = agent.report().await;
    assert_eq!(report.source.revision.as_deref(), Some(signed.as_str()));
    let table = report.to_table();
    assert!(
        table.contains("revision served is signed by release-bot@example.invalid")
            && table.contains("newest revision rejected: ")
            && table.contains("not signed"),
        "{table}"
    );
    assert!(report.clusters[&names[1]].claims.len() == 1);
    agent.stop().await;
    f.shutdown().await;
}
