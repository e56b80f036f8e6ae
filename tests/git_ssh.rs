//! The Git source over SSH against a real OpenSSH `sshd` on loopback: a deploy key (with
//! and without a passphrase) clones and fetches; the host key is checked against a
//! known_hosts file, plain or hashed, for ed25519, ECDSA and RSA hosts; a host key not in
//! the file and a client key the server does not know are refused with errors that say
//! which and name the host; and no key material shows in an error, a log, a metric or
//! the status, also when the agent runs on an SSH source.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_core::testing::{claim, cluster, FleetFiles};
use psql_fleet::source::git::{check_transport, Credentials, GitRef, GitSource, SshAuth};
use test_support::files::FleetRepo;
use test_support::git_ssh::{self, known_hosts, SshServer};
use test_support::{ProcessOptions, SimFleet};

const PASSPHRASE: &str = "pass-9c1e-phrase";

fn source(url: &str, cache: &Path, auth: SshAuth) -> GitSource {
    GitSource {
        url: url.to_string(),
        cache_dir: cache.to_path_buf(),
        reference: GitRef::Branch("main".into()),
        credentials: Credentials::default().with_ssh(auth),
    }
}

/// Commits the `Cluster` document of `name` and pushes it; returns the commit id.
fn push_cluster(repo: &FleetRepo, name: &str) -> String {
    repo.write(&FleetFiles::new().with(&cluster(name)));
    repo.commit(name)
}

/// Every piece of key material a message must not carry: the lines of the private key's
/// body, the public keys' base64, the passphrase.
fn key_material(private_keys: &[&Path], public_keys: &[String]) -> Vec<String> {
    let mut secrets = vec![PASSPHRASE.to_string()];
    for key in private_keys {
        let text = std::fs::read_to_string(key).unwrap();
        secrets.extend(
            text.lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(str::to_string),
        );
    }
    for public in public_keys {
        secrets.extend(public.split_whitespace().nth(1).map(str::to_string));
    }
    secrets
}

fn assert_no_key_material(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} shows key material:\n{text}"
        );
    }
}

/// Why syncing `url` with `auth` into a fresh cache fails.
fn sync_error(url: &str, auth: SshAuth) -> String {
    let cache = tempfile::tempdir().unwrap();
    source(url, cache.path(), auth)
        .sync()
        .unwrap_err()
        .to_string()
}

#[test]
fn a_fleet_is_cloned_and_fetched_over_ssh_with_a_deploy_key() {
    if !git_ssh::available() {
        return;
    }
    let repo = FleetRepo::new();
    let first = push_cluster(&repo, "c1");
    let server = SshServer::start("ed25519");
    let key = server.authorize("deploy", "ed25519", "");
    let known = known_hosts(
        &server.dir().join("known_hosts"),
        &[server.known_hosts_line()],
        false,
    );
    let cache = tempfile::tempdir().unwrap();
    let s = source(
        &server.url(&repo.bare()),
        cache.path(),
        SshAuth::load(&key, None, &known).unwrap(),
    );
    let r1 = s.sync().unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(r1.id, first);
    assert_eq!(
        r1.tree.files.keys().collect::<Vec<_>>(),
        vec!["clusters/c1.yaml"]
    );
    let second = push_cluster(&repo, "c2");
    let r2 = s.sync().unwrap();
    assert_eq!(r2.id, second);
    assert_eq!(r2.tree.files.len(), 2);
}

#[test]
fn hashed_known_hosts_and_ecdsa_and_rsa_keys_with_a_passphrase_are_accepted() {
    if !git_ssh::available() {
        return;
    }
    let repo = FleetRepo::new();
    let first = push_cluster(&repo, "c1");
    for kind in ["ecdsa", "rsa"] {
        let server = SshServer::start(kind);
        let key = server.authorize("deploy", kind, PASSPHRASE);
        let passphrase = server.dir().join("passphrase");
        std::fs::write(&passphrase, format!("{PASSPHRASE}\n")).unwrap();
        // Another host's entry first: only the one hashed from [127.0.0.1]:port matches.
        let other = SshServer::start("ed25519");
        let known = known_hosts(
            &server.dir().join("known_hosts"),
            &[
                other.host_key_as("git.example.com"),
                server.known_hosts_line(),
            ],
            true,
        );
        let auth = SshAuth::load(&key, Some(&passphrase), &known).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let r = source(&server.url(&repo.bare()), cache.path(), auth)
            .sync()
            .unwrap_or_else(|e| panic!("{kind}: {e}\n{}", server.log()));
        assert_eq!(r.id, first, "{kind}");
    }
}

#[test]
fn a_host_key_not_in_known_hosts_is_refused_naming_the_host() {
    if !git_ssh::available() {
        return;
    }
    let repo = FleetRepo::new();
    push_cluster(&repo, "c1");
    let server = SshServer::start("ed25519");
    let key = server.authorize("deploy", "ed25519", "");
    let url = server.url(&repo.bare());
    let host = format!("[127.0.0.1]:{}", server.port);
    let impostor = SshServer::start("ed25519");
    let secrets = key_material(&[&key], &[server.host_key(), impostor.host_key()]);

    // Another key for this host: the host key changed, or someone is in between.
    let changed = known_hosts(
        &server.dir().join("changed"),
        &[impostor.host_key_as(&host)],
        false,
    );
    let err = sync_error(&url, SshAuth::load(&key, None, &changed).unwrap());
    assert!(
        err.contains(&format!("host key verification failed for {host}")),
        "{err}"
    );
    assert!(err.contains("is not one that"), "{err}");
    assert!(err.contains("SHA256:"), "{err}");
    assert!(!err.contains(&server.user), "{err}");
    assert_no_key_material("the error", &err, &secrets);
    assert!(
        !server.log().contains("Accepted publickey"),
        "the key was offered to a host not trusted:\n{}",
        server.log()
    );

    // No entry for this host and port at all.
    let unknown = known_hosts(
        &server.dir().join("unknown"),
        &[impostor.known_hosts_line()],
        false,
    );
    let err = sync_error(&url, SshAuth::load(&key, None, &unknown).unwrap());
    assert!(
        err.contains(&format!("host key verification failed for {host}")),
        "{err}"
    );
    assert!(err.contains("has no key for it"), "{err}");
    assert!(
        err.contains(&format!("ssh-keyscan -p {} 127.0.0.1", server.port)),
        "{err}"
    );
    assert_no_key_material("the error", &err, &secrets);

    // Revoked.
    let revoked = known_hosts(
        &server.dir().join("revoked"),
        &[
            format!("@revoked {}", server.known_hosts_line()),
            server.known_hosts_line(),
        ],
        false,
    );
    let err = sync_error(&url, SshAuth::load(&key, None, &revoked).unwrap());
    assert!(err.contains("@revoked"), "{err}");
}

#[test]
fn a_client_key_the_server_does_not_know_is_refused() {
    if !git_ssh::available() {
        return;
    }
    let repo = FleetRepo::new();
    push_cluster(&repo, "c1");
    let server = SshServer::start("ed25519");
    server.authorize("deploy", "ed25519", "");
    let stranger = git_ssh::keygen(&server.dir().join("stranger"), "ed25519", PASSPHRASE);
    let passphrase = server.dir().join("passphrase");
    std::fs::write(&passphrase, PASSPHRASE).unwrap();
    let known = known_hosts(
        &server.dir().join("known_hosts"),
        &[server.known_hosts_line()],
        false,
    );
    let err = sync_error(
        &server.url(&repo.bare()),
        SshAuth::load(&stranger, Some(&passphrase), &known).unwrap(),
    );
    assert!(
        err.contains("the remote refused the SSH key (--git-ssh-key)"),
        "{err}"
    );
    assert!(err.contains(&format!("127.0.0.1:{}", server.port)), "{err}");
    assert!(!err.contains(&format!("{}@", server.user)), "{err}");
    let secrets = key_material(&[&stranger], &[git_ssh::public_key(&stranger)]);
    assert_no_key_material("the error", &err, &secrets);

    // The wrong passphrase: refused as well, the passphrase nowhere.
    std::fs::write(&passphrase, "not-the-passphrase").unwrap();
    let err = sync_error(
        &server.url(&repo.bare()),
        SshAuth::load(&stranger, Some(&passphrase), &known).unwrap(),
    );
    assert!(
        err.contains("--git-ssh-key-passphrase-file its passphrase"),
        "{err}"
    );
    assert!(!err.contains("not-the-passphrase"), "{err}");
    assert_no_key_material("the error", &err, &secrets);
}

#[test]
fn ssh_settings_go_with_ssh_sources_and_scp_like_urls_are_ssh() {
    if !git_ssh::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = git_ssh::keygen(&dir.path().join("id"), "ed25519", "");
    let known = known_hosts(
        &dir.path().join("known_hosts"),
        &[format!("127.0.0.1 {}", git_ssh::public_key(&key))],
        false,
    );
    let with_ssh = Credentials::default().with_ssh(SshAuth::load(&key, None, &known).unwrap());
    let err = check_transport("https://example.invalid/fleet.git", &with_ssh)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("for ssh:// and user@host:path sources only"),
        "{err}"
    );
    // An scp-like URL goes to port 22 over SSH: whatever answers there (most likely
    // nothing), the error is the transport's, not a refusal of the URL.
    let err = sync_error(
        "git@127.0.0.1:org/fleet.git",
        SshAuth::load(&key, None, &known).unwrap(),
    );
    assert!(!err.contains("needs a deploy key"), "{err}");
    assert!(err.contains("127.0.0.1:org/fleet.git"), "{err}");
    assert!(!err.contains("git@"), "{err}");
}

/// A file in `dir` holding `text`.
fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_commits_fetched_over_ssh_and_shows_no_key_material() {
    if !git_ssh::available() {
        return;
    }
    let f = SimFleet::start(1, Duration::from_millis(300)).await;
    let name = f.names[0].clone();
    f.add_claim(
        &claim("first", &name)
            .namespace("first")
            .install_namespace("first"),
    )
    .await;
    let repo = FleetRepo::in_dir(f.fleet_dir());
    let first = repo.commit("first");
    let server = SshServer::start("ed25519");
    let key = server.authorize("deploy", "ed25519", PASSPHRASE);
    let secrets_dir = tempfile::tempdir().unwrap();
    let passphrase = file(secrets_dir.path(), "passphrase", PASSPHRASE);
    let known = file(
        secrets_dir.path(),
        "known_hosts",
        &format!("{}\n", server.known_hosts_line()),
    );
    let args = [
        "--git-ssh-key".into(),
        key.display().to_string(),
        "--git-ssh-key-passphrase-file".into(),
        passphrase.display().to_string(),
        "--git-known-hosts".into(),
        known.display().to_string(),
    ];
    let agent = f
        .spawn_agent(ProcessOptions {
            source: Some(server.url(&repo.bare())),
            args: args.to_vec(),
            rust_log: Some("debug".into()),
            ..ProcessOptions::default()
        })
        .await;
    let report = agent.wait_ready(&[(&name, 1)]).await;
    assert_eq!(report.source.revision.as_deref(), Some(first.as_str()));

    f.add_claim(
        &claim("second", &name)
            .namespace("second")
            .install_namespace("second"),
    )
    .await;
    let pushed = repo.commit("second");
    let report = agent.wait_ready(&[(&name, 2)]).await;
    assert_eq!(report.source.revision.as_deref(), Some(pushed.as_str()));

    // The host key changes under the agent: it keeps the last good revision and says why.
    let impostor = SshServer::start("ed25519");
    let host = format!("[127.0.0.1]:{}", server.port);
    std::fs::write(&known, impostor.host_key_as(&host)).unwrap();
    let report = agent
        .wait_for("the source error naming the host", |r| {
            r.source
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains(&format!("host key verification failed for {host}")))
        })
        .await;
    assert_eq!(report.source.revision.as_deref(), Some(pushed.as_str()));

    let secrets = key_material(&[&key], &[git_ssh::public_key(&key), server.host_key()]);
    let status = agent.get("/api/v1/status").await.unwrap();
    assert_no_key_material("the status", &status, &secrets);
    assert_no_key_material("the metrics", &agent.metrics().await, &secrets);
    let log = agent.log();
    assert!(
        log.contains(&host),
        "the log does not name the host:\n{log}"
    );
    assert_no_key_material("the log", &log, &secrets);
    agent.stop().await;

    // At start: a known_hosts file without a key is refused before anything runs.
    std::fs::write(&known, "# nothing yet\n").unwrap();
    let out = test_support::psql_fleet(["run", "--source", &server.url(&repo.bare())])
        .args(&args)
        .args(["--credentials-dir", &f.sim_dir().display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no host key in it"), "{stderr}");
    assert!(stderr.contains("--git-known-hosts"), "{stderr}");
    f.shutdown().await;
}
