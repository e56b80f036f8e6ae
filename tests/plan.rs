//! Golden tests of `psql-fleet plan` on a real Git repository: a copy of the example fleet
//! (`tests/golden/plan/fleet/`, kept apart so that changes to `fleet/` leave these goldens
//! alone) is committed under `fleet/` of a fresh repository, then one commit per kind of change,
//! each tagged; the plan of each commit against the one before must be exactly the golden
//! Markdown and JSON in `tests/golden/plan/`. Regenerate deliberately with
//! `UPDATE_GOLDEN=1 cargo test --test plan` and review the diff.

use test_support as common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::git::git;

/// A change of the fleet directory.
type Change = fn(&Path);

/// The changes, in commit order, by tag.
const CHANGES: &[(&str, Change)] = &[
    ("bump", bump),
    ("dev-pin", dev_pin),
    ("values", values),
    ("remove-claim", remove_claim),
    ("new-cluster", new_cluster),
    ("invalid", invalid),
    ("selector", selector),
    ("relabel", relabel),
];

fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Fleet-wide pins: every cluster moves, except where the dev override pins StackGres.
fn bump(fleet: &Path) {
    edit(
        &fleet.join("fleet.yaml"),
        "stackgres-operator: 1.18.4",
        "stackgres-operator: 1.18.5",
    );
    edit(
        &fleet.join("fleet.yaml"),
        "atlas-operator: 0.7.23",
        "atlas-operator: 0.7.24",
    );
}

/// Only the dev override changes, so only dev clusters do.
fn dev_pin(fleet: &Path) {
    edit(
        &fleet.join("fleet.yaml"),
        "pins: {stackgres-operator: 1.19.0}",
        "pins: {stackgres-operator: 1.20.0}",
    );
}

/// A claim's values and labels.
fn values(fleet: &Path) {
    let claim = fleet.join("claims/staging/staging-1.yaml");
    edit(&claim, "labels: {team: data}", "labels: {team: analytics}");
    edit(
        &claim,
        "deploy: {restapi: false}",
        "deploy: {restapi: true}",
    );
    edit(&claim, "type: ClusterIP", "type: LoadBalancer");
}

/// The second claim of prod-us-1 goes.
fn remove_claim(fleet: &Path) {
    let path = fleet.join("claims/prod/prod-us-1.yaml");
    let text = fs::read_to_string(&path).unwrap();
    let (first, _) = text.split_once("\n---\n").unwrap();
    fs::write(&path, format!("{first}\n")).unwrap();
}

/// A cluster no wave selects, with one claim: it lands in the implicit last wave.
/// (The fleet files of these commits stay literal: the golden plans name the commits, whose
/// ids are hashes of these exact bytes.)
fn new_cluster(fleet: &Path) {
    fs::write(
        fleet.join("clusters/qa-1.yaml"),
        "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata:\n  name: qa-1\n  labels: {env: qa}\nspec:\n  kubeconfig: qa-1.yaml\n",
    )
    .unwrap();
    fs::create_dir_all(fleet.join("claims/qa")).unwrap();
    fs::write(
        fleet.join("claims/qa/qa-1.yaml"),
        "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: smoke, namespace: qa}\nspec:\n  clusterName: qa-1\n",
    )
    .unwrap();
}

/// Two mistakes at once: both must be reported.
fn invalid(fleet: &Path) {
    fs::write(
        fleet.join("claims/qa/broken.yaml"),
        "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: lost, namespace: qa}\nspec: {clusterName: qa-9}\n---\napiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: broken, namespace: qa}\nspec:\n  clusterName: qa-1\n  helmProviderConfigRef: {name: x, kind: Foo}\n",
    )
    .unwrap();
}

/// The mistakes fixed, and a claim for every prod cluster by label. Planned against
/// `new-cluster`, the last revision that validates.
fn selector(fleet: &Path) {
    fs::remove_file(fleet.join("claims/qa/broken.yaml")).unwrap();
    fs::create_dir_all(fleet.join("claims/shared")).unwrap();
    fs::write(
        fleet.join("claims/shared/monitoring.yaml"),
        "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: monitoring, namespace: monitoring}\nspec:\n  clusterSelector: {matchLabels: {env: prod}}\n  namespace: monitoring\n",
    )
    .unwrap();
}

/// Labels change: qa-1 becomes a prod cluster and gains the selector claim; prod-us-1 is
/// retired and loses it. Their own claims stay.
fn relabel(fleet: &Path) {
    edit(
        &fleet.join("clusters/qa-1.yaml"),
        "labels: {env: qa}",
        "labels: {env: prod}",
    );
    edit(
        &fleet.join("clusters/prod-us-1.yaml"),
        "labels: {env: prod, region: us}",
        "labels: {env: retired, region: us}",
    );
}

/// The repository: `base`, then one tagged commit per change.
fn repository(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    fs::write(dir.join("README.md"), "not a fleet file\n").unwrap();
    common::files::copy_dir(
        &common::root().join("tests/golden/plan/fleet"),
        &dir.join("fleet"),
    );
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "base"]);
    git(dir, &["tag", "base"]);
    for (tag, change) in CHANGES {
        change(&dir.join("fleet"));
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", tag]);
        git(dir, &["tag", tag]);
    }
}

fn plan(repo: &Path, base: &str, head: &str, format: &str) -> (bool, String) {
    let out = Command::new(common::binary())
        .args([
            "plan",
            "--base",
            base,
            "--head",
            head,
            "--fleet-path",
            "fleet",
            "-o",
            format,
        ])
        .arg("--repo")
        .arg(repo)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

fn check_golden(name: &str, actual: &str) -> Option<String> {
    let path = common::root().join("tests/golden/plan").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
    }
    let expected = fs::read_to_string(&path).unwrap_or_default();
    (expected != actual).then(|| format!("{name} differs from its golden file:\n{actual}"))
}

#[test]
fn every_kind_of_change_gives_its_golden_plan() {
    let dir = tempfile::tempdir().unwrap();
    repository(dir.path());
    let mut mismatches = Vec::new();
    let mut base = "base";
    for (tag, _) in CHANGES {
        if *tag == "selector" {
            base = "new-cluster";
        }
        for format in ["markdown", "json"] {
            let (ok, out) = plan(dir.path(), base, tag, format);
            assert_eq!(ok, *tag != "invalid", "{tag} {format}: exit status\n{out}");
            let ext = if format == "json" { "json" } else { "md" };
            mismatches.extend(check_golden(&format!("{tag}.{ext}"), &out));
        }
        base = tag;
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_plan_reads_revisions_without_touching_the_working_tree() {
    let dir = tempfile::tempdir().unwrap();
    repository(dir.path());
    // The working tree is changed and left dirty; the plan must not see it.
    fs::remove_dir_all(dir.path().join("fleet")).unwrap();
    let (ok, out) = plan(dir.path(), "base", "bump", "json");
    assert!(ok, "{out}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["summary"]["changed"], 4);
    assert!(!dir.path().join("fleet").exists());
}

#[test]
fn an_unknown_revision_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    repository(dir.path());
    let out = Command::new(common::binary())
        .args([
            "plan",
            "--base",
            "no-such-tag",
            "--head",
            "bump",
            "--fleet-path",
            "fleet",
        ])
        .arg("--repo")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-tag"), "{stderr}");
}

#[test]
fn the_github_actions_example_uses_only_flags_plan_has() {
    let workflow =
        fs::read_to_string(common::root().join("examples/github-actions/psql-fleet-plan.yml"))
            .unwrap();
    let help = Command::new(common::binary())
        .args(["plan", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let (_, invocation) = workflow.split_once("psql-fleet plan \\\n").unwrap();
    let flags: Vec<&str> = invocation
        .split_whitespace()
        .take_while(|w| *w != "|")
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(flags.len() >= 6, "{flags:?}");
    for flag in flags {
        assert!(help.contains(flag), "{flag} is not a plan flag:\n{help}");
    }
    assert!(
        help.contains("GITHUB_API_URL"),
        "the API URL is read from Actions' env"
    );
}

#[test]
fn a_base_from_before_the_fleet_existed_shows_every_object_as_created() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    fs::write(dir.path().join("README.md"), "no fleet yet\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "empty"]);
    git(dir.path(), &["tag", "empty"]);
    common::files::copy_dir(
        &common::root().join("tests/golden/plan/fleet"),
        &dir.path().join("fleet"),
    );
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "fleet"]);
    let (ok, out) = plan(dir.path(), "empty", "HEAD", "json");
    assert!(ok, "{out}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["baseInvalid"], "1 error");
    assert_eq!(plan["summary"]["creates"], 15, "{out}");
    assert_eq!(plan["summary"]["changed"], 4);
    assert!(plan["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["change"] == "added"));
}

#[test]
fn with_trusted_keys_the_plan_says_whether_the_head_is_signed_by_one() {
    if !common::signing::tools_present() {
        return;
    }
    let key = common::signing::SigningKey::gpg("Fleet Signer");
    let trusted = key.trusted_file(&[&key]);
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    key.use_in(dir.path());
    common::files::copy_dir(
        &common::root().join("tests/golden/plan/fleet"),
        &dir.path().join("fleet"),
    );
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-S", "-m", "signed"]);
    bump(&dir.path().join("fleet"));
    git(dir.path(), &["commit", "-q", "-a", "-m", "unsigned"]);
    let signature = |head: &str, format: &str| {
        let out = Command::new(common::binary())
            .args([
                "plan",
                "--base",
                "HEAD~1",
                "--head",
                head,
                "--fleet-path",
                "fleet",
            ])
            .args(["-o", format, "--trusted-keys"])
            .arg(&trusted)
            .arg("--repo")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&signature("HEAD", "json")).unwrap();
    assert_eq!(json["headSignature"]["trusted"], false);
    assert_eq!(json["headSignature"]["reason"], "unsigned");
    let markdown = signature("HEAD", "markdown");
    assert!(
        markdown.contains("**the head is not signed by a trusted key** (not signed)"),
        "{markdown}"
    );
    git(dir.path(), &["tag", "signed", "HEAD~1"]);
    let json: serde_json::Value = serde_json::from_str(&signature("signed", "json")).unwrap();
    assert_eq!(json["headSignature"]["trusted"], true);
    let detail = json["headSignature"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("signed by Fleet Signer <signer@example.invalid> (openpgp key "),
        "{detail}"
    );
}
