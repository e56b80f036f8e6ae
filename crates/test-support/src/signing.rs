//! Signing keys for the signed-commit tests, made by the real tools: an SSH key from
//! `ssh-keygen`, an OpenPGP key from `gpg` in a GNUPGHOME of its own (batch generation,
//! `%no-protection`, so no agent prompt). [`SigningKey::use_in`] sets one on a working copy,
//! so `git commit -S` and `git tag -s` sign with it as a person's git would.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::git::git;

/// Whether `ssh-keygen` and `gpg` are here. Under `$CI` their absence fails the test;
/// elsewhere it says SKIPPED and the caller returns.
pub fn tools_present() -> bool {
    let missing: Vec<&str> = ["ssh-keygen", "gpg"]
        .into_iter()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing:?} missing (.ci/run installs openssh-client and gnupg)"
    );
    eprintln!("SKIPPED: {missing:?} missing (Debian packages openssh-client, gnupg)");
    false
}

/// A key that signs commits, and the text that trusts it in a `--trusted-keys` file.
pub struct SigningKey {
    dir: tempfile::TempDir,
    /// An `allowed_signers` line or an armoured OpenPGP public key block.
    pub trusted: String,
    /// `git config` settings that make git sign with it.
    config: Vec<(&'static str, String)>,
    gpg_home: Option<PathBuf>,
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl SigningKey {
    /// An ed25519 SSH key, trusted as `principal`.
    pub fn ssh(principal: &str) -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", principal, "-f"])
            .arg(&key));
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let public: Vec<&str> = public.split_whitespace().take(2).collect();
        SigningKey {
            trusted: format!("{principal} namespaces=\"git\" {}\n", public.join(" ")),
            config: vec![
                ("gpg.format", "ssh".into()),
                ("user.signingkey", key.display().to_string()),
            ],
            dir,
            gpg_home: None,
        }
    }

    /// An ed25519 OpenPGP key with user ID `name <signer@example.invalid>`.
    pub fn gpg(name: &str) -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("gnupg");
        std::fs::create_dir(&home).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let params = dir.path().join("params");
        std::fs::write(
            &params,
            format!(
                "%no-protection\nKey-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign\n\
                 Name-Real: {name}\nName-Email: signer@example.invalid\nExpire-Date: 0\n%commit\n"
            ),
        )
        .unwrap();
        let gpg = |args: &[&str]| {
            run(Command::new("gpg")
                .env("GNUPGHOME", &home)
                .args(["--batch", "--quiet"])
                .args(args))
        };
        gpg(&["--gen-key", &params.display().to_string()]);
        let colons = gpg(&["--with-colons", "--list-keys"]);
        let fingerprint = colons
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .unwrap()
            .to_string();
        let armoured = gpg(&["--armor", "--export", &fingerprint]);
        // git runs gpg.program with its own environment: a wrapper carries the home.
        let program = dir.path().join("gpg-here");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nGNUPGHOME='{}' exec gpg \"$@\"\n",
                home.display()
            ),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        SigningKey {
            trusted: armoured,
            config: vec![
                ("gpg.format", "openpgp".into()),
                ("gpg.program", program.display().to_string()),
                ("user.signingkey", fingerprint),
            ],
            dir,
            gpg_home: Some(home),
        }
    }

    /// Makes git in the working copy `work` sign with this key.
    pub fn use_in(&self, work: &Path) {
        for (name, value) in &self.config {
            git(work, &["config", name, value]);
        }
    }

    /// Writes a trusted-keys file holding `keys` into this key's folder; its path.
    pub fn trusted_file(&self, keys: &[&SigningKey]) -> PathBuf {
        let path = self.dir.path().join("trusted-keys");
        let text: Vec<&str> = keys.iter().map(|k| k.trusted.as_str()).collect();
        std::fs::write(&path, text.join("\n")).unwrap();
        path
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        // gpg started an agent for the home; it would outlive the test.
        if let Some(home) = &self.gpg_home {
            let _ = Command::new("gpgconf")
                .env("GNUPGHOME", home)
                .args(["--kill", "gpg-agent"])
                .output();
        }
    }
}
