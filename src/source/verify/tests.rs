//! Real signed commits and tags, made by `git` with keys from `ssh-keygen` and `gpg`,
//! checked by the agent's own verification.

use std::path::Path;

use fleet_core::testing::{cluster, FleetFiles};
use git2::{Oid, Repository};
use test_support::files::FleetRepo;
use test_support::signing::{tools_present, SigningKey};

use super::*;

fn keys(file: &Path) -> TrustedKeys {
    TrustedKeys::from_file(file).unwrap()
}

fn policy(file: &Path, mode: Mode) -> Policy {
    Policy {
        keys: keys(file),
        mode,
    }
}

/// A repository with one commit of cluster `name`, signed by `key` when given.
fn repo_with(key: Option<&SigningKey>, name: &str) -> (FleetRepo, Oid) {
    let repo = FleetRepo::new();
    if let Some(key) = key {
        key.use_in(&repo.work);
    }
    repo.write(&FleetFiles::new().with(&cluster(name)));
    let id = match key {
        Some(_) => repo.commit_signed(name),
        None => repo.commit(name),
    };
    (repo, Oid::from_str(&id).unwrap())
}

fn open(repo: &FleetRepo) -> Repository {
    Repository::open(&repo.work).unwrap()
}

#[test]
fn commits_signed_by_a_trusted_ssh_or_openpgp_key_are_accepted() {
    if !tools_present() {
        return;
    }
    let ssh = SigningKey::ssh("alice@example.invalid");
    let gpg = SigningKey::gpg("Fleet Signer");
    let trusted = ssh.trusted_file(&[&ssh, &gpg]);
    let head = Mode::Head;

    let (repo, commit) = repo_with(Some(&ssh), "c1");
    let signed = policy(&trusted, head)
        .check(&open(&repo), &GitRef::Head, commit)
        .unwrap();
    assert_eq!(signed.signer, "alice@example.invalid");
    assert_eq!(signed.format, "ssh");
    assert!(signed.key.starts_with("SHA256:"), "{signed}");

    let (repo, commit) = repo_with(Some(&gpg), "c2");
    let signed = policy(&trusted, head)
        .check(&open(&repo), &GitRef::Head, commit)
        .unwrap();
    assert_eq!(signed.signer, "Fleet Signer <signer@example.invalid>");
    assert_eq!(signed.format, "openpgp");
    assert_eq!(
        check_commit(&open(&repo), commit, &keys(&trusted)),
        Ok(signed)
    );
}

#[test]
fn unsigned_untrusted_and_tampered_commits_are_refused() {
    if !tools_present() {
        return;
    }
    let ssh = SigningKey::ssh("alice@example.invalid");
    let stranger = SigningKey::ssh("mallory@example.invalid");
    let gpg = SigningKey::gpg("Fleet Signer");
    let gpg_stranger = SigningKey::gpg("Someone Else");
    let trusted = ssh.trusted_file(&[&ssh, &gpg]);
    let check = |repo: &FleetRepo, commit| {
        policy(&trusted, Mode::Head)
            .check(&open(repo), &GitRef::Head, commit)
            .unwrap_err()
    };

    let (repo, commit) = repo_with(None, "c1");
    let refused = check(&repo, commit);
    assert_eq!(refused.why, Why::Unsigned);
    assert_eq!(refused.commit, commit.to_string());
    assert_eq!(
        refused.to_string(),
        format!("commit {}: not signed", &commit.to_string()[..12])
    );

    for stranger in [&stranger, &gpg_stranger] {
        let (repo, commit) = repo_with(Some(stranger), "c1");
        let refused = check(&repo, commit);
        assert_eq!(refused.why.reason(), "untrusted_key", "{refused}");
    }

    // The same signature over other content: a commit rewritten after it was signed.
    for key in [&ssh, &gpg] {
        let (repo, commit) = repo_with(Some(key), "c1");
        let git = open(&repo);
        let (signature, data) = git.extract_signature(&commit, None).unwrap();
        let forged = String::from_utf8(data.to_vec())
            .unwrap()
            .replace("\nc1\n", "\nc2\n");
        let tampered = git
            .commit_signed(&forged, std::str::from_utf8(&signature).unwrap(), None)
            .unwrap();
        let refused = check(&repo, tampered);
        assert_eq!(refused.why.reason(), "bad_signature", "{refused}");
    }
}

#[test]
fn following_a_tag_checks_the_tag_s_own_signature() {
    if !tools_present() {
        return;
    }
    let ssh = SigningKey::ssh("alice@example.invalid");
    let gpg = SigningKey::gpg("Fleet Signer");
    let trusted = ssh.trusted_file(&[&ssh, &gpg]);
    for key in [&ssh, &gpg] {
        // An unsigned commit under a signed tag: the tag is what is checked.
        let (repo, commit) = repo_with(None, "c1");
        key.use_in(&repo.work);
        repo.tag("v1", true);
        let tag = GitRef::Tag("v1".into());
        let signed = policy(&trusted, Mode::Tag)
            .check(&open(&repo), &tag, commit)
            .unwrap();
        assert_eq!(
            signed.format,
            if std::ptr::eq(key, &ssh) {
                "ssh"
            } else {
                "openpgp"
            }
        );
        let refused = policy(&trusted, Mode::TagAndHead)
            .check(&open(&repo), &tag, commit)
            .unwrap_err();
        assert_eq!(refused.why, Why::Unsigned);
        // A lightweight tag carries no signature.
        repo.tag("v1", false);
        let refused = policy(&trusted, Mode::Tag)
            .check(&open(&repo), &tag, commit)
            .unwrap_err();
        assert_eq!(refused.why, Why::NotAnnotated, "{refused}");
    }
}

#[test]
fn trusted_keys_files_are_read_strictly() {
    let path = Path::new("trusted");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIh5B/2mCFW4CMLf1NuOeE5e5oBNykjQwUHdQ6Br0vHf";
    let ok = |text: &str| TrustedKeys::parse(path, text).map(|k| format!("{k:?}"));
    assert!(ok(&format!("# ops\nalice@x {key} laptop\n"))
        .unwrap()
        .contains("alice@x"));
    assert!(ok(&format!("alice@x namespaces=\"file,git\" {key}\n")).is_ok());
    let refused = |text: &str| ok(text).unwrap_err().to_string();
    assert!(refused("").contains("no key in it"));
    assert!(refused(&format!("alice@x namespaces=\"file\" {key}")).contains("leave out \"git\""));
    assert!(refused(&format!("alice@x valid-before=20300101 {key}"))
        .contains("line 1: option \"valid-before\" is not supported"));
    assert!(refused(&format!("alice@x cert-authority {key}")).contains("not supported"));
    assert!(refused("alice@x ssh-ed25519 AAAA").contains("line 1: not an SSH public key"));
    assert!(refused("-----BEGIN PGP PUBLIC KEY BLOCK-----\nxx\n")
        .contains("OpenPGP key block 1: no -----END"));
}
