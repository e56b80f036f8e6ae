//! Git over SSH: which URLs are SSH and where they point, the deploy key handed to libssh2,
//! and the host key check against `--git-known-hosts` that every connection passes before
//! the key is offered.
//!
//! There is no trust on first use and no switch to turn the check off: a host whose key
//! the file does not hold is refused, as `StrictHostKeyChecking yes` does. The key files
//! are read when libgit2 asks for them (so a rotated Secret is picked up at the next
//! fetch) and are checked once at start so that a wrong path fails there; their contents
//! go to libssh2 only, never into a message.

use std::path::{Path, PathBuf};

use git2::cert::Cert;
use git2::Cred;

use super::known_hosts::{self, KnownHosts, Verdict};
use super::Error;

/// The user when the URL names none, as GitHub, GitLab and Gitea expect.
const DEFAULT_USER: &str = "git";

/// Where an SSH URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host` on port 22, else `[host]:port`: the name `known_hosts` and messages use.
    pub fn name(&self) -> String {
        known_hosts::host_name(&self.host, self.port)
    }
}

/// Whether `url` is an SSH URL: `ssh://`, `git+ssh://`, `ssh+git://`, or scp-like
/// `user@host:path`.
pub fn is_ssh(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, _)) => scheme.split('+').any(|part| part == "ssh"),
        None => scp_like(url).is_some(),
    }
}

/// `user@host:path` split at the colon, when the colon comes before any slash (as Git
/// tells it from a local path).
fn scp_like(url: &str) -> Option<(&str, &str)> {
    let (user_host, path) = url.split_once(':')?;
    (user_host.contains('@') && !user_host.contains('/')).then_some((user_host, path))
}

/// The user, host and port of an SSH URL; `None` when it is not one or names no host.
pub fn endpoint(url: &str) -> Option<Endpoint> {
    let (user_host, port) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.split('+').any(|part| part == "ssh") => {
            let authority = rest.split('/').next().unwrap_or_default();
            let (user_host, port) = split_port(authority)?;
            (user_host, port)
        }
        Some(_) => return None,
        None => (scp_like(url)?.0, 22),
    };
    let (user, host) = match user_host.rsplit_once('@') {
        // A password after the user is no use to SSH here; libgit2 drops it too.
        Some((user, host)) => (user.split(':').next().unwrap_or_default(), host),
        None => (DEFAULT_USER, user_host),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || user.is_empty() {
        return None;
    }
    Some(Endpoint {
        user: user.to_string(),
        host: host.to_string(),
        port,
    })
}

/// `user@host:port` into `user@host` and the port (22 when none); `[v6]:port` too.
fn split_port(authority: &str) -> Option<(&str, u16)> {
    let bracket = authority.rfind(']');
    match authority
        .rfind(':')
        .filter(|colon| bracket.is_none_or(|b| *colon > b))
    {
        Some(colon) => {
            let port = &authority[colon + 1..];
            let port = if port.is_empty() {
                22
            } else {
                port.parse().ok()?
            };
            Some((&authority[..colon], port))
        }
        None => Some((authority, 22)),
    }
}

/// The deploy key and the pinned host keys of an SSH source. Holds paths only; its
/// `Debug` shows nothing read from them.
#[derive(Clone, Debug)]
pub struct SshAuth {
    key: PathBuf,
    passphrase_file: Option<PathBuf>,
    known_hosts: PathBuf,
}

impl SshAuth {
    /// Checks that the key, the passphrase file and the known_hosts file can be read and
    /// look like what they should be, so that a wrong path fails at start.
    pub fn load(
        key: &Path,
        passphrase_file: Option<&Path>,
        known_hosts: &Path,
    ) -> Result<SshAuth, Error> {
        let key_error = |message: String| Error::SshKey {
            path: key.to_path_buf(),
            message,
        };
        let pem = std::fs::read_to_string(key).map_err(|e| key_error(e.to_string()))?;
        // PEM and OpenSSH private keys alike; the text itself is never quoted.
        if !(pem.contains("-----BEGIN ") && pem.contains("PRIVATE KEY-----")) {
            return Err(key_error("no private key in it".into()));
        }
        drop(pem);
        if let Some(path) = passphrase_file {
            read_passphrase(path)?;
        }
        let auth = SshAuth {
            key: key.to_path_buf(),
            passphrase_file: passphrase_file.map(Path::to_path_buf),
            known_hosts: known_hosts.to_path_buf(),
        };
        if auth.read_known_hosts()?.is_empty() {
            return Err(Error::KnownHosts {
                path: known_hosts.to_path_buf(),
                message: "no host key in it (fill it with ssh-keyscan -p PORT HOST)".into(),
            });
        }
        Ok(auth)
    }

    fn read_known_hosts(&self) -> Result<KnownHosts, Error> {
        let error = |message: String| Error::KnownHosts {
            path: self.known_hosts.clone(),
            message,
        };
        let text = std::fs::read_to_string(&self.known_hosts).map_err(|e| error(e.to_string()))?;
        KnownHosts::parse(&text).map_err(|e| error(e.to_string()))
    }

    /// The key as libgit2 wants it, for `user`.
    pub fn credential(&self, user: &str) -> Result<Cred, git2::Error> {
        let passphrase = match &self.passphrase_file {
            Some(path) => {
                Some(read_passphrase(path).map_err(|e| git2::Error::from_str(&e.to_string()))?)
            }
            None => None,
        };
        Cred::ssh_key(user, None, &self.key, passphrase.as_deref())
    }

    /// Whether `cert`, the host key `endpoint` presented, is one `--git-known-hosts`
    /// holds for it; the refusal names the host, the key's type and fingerprint and the
    /// file, never the key itself.
    pub fn check_host_key(&self, endpoint: &Endpoint, cert: &Cert<'_>) -> Result<(), String> {
        let name = endpoint.name();
        let refused = |why: String| format!("host key verification failed for {name}: {why}");
        let file = self.known_hosts.display();
        let Some(hostkey) = cert.as_hostkey() else {
            return Err(refused("the host presented no SSH host key".into()));
        };
        let (Some(key), Some(kind)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
            return Err(refused("the host presented no SSH host key".into()));
        };
        let known = self
            .read_known_hosts()
            .map_err(|e| refused(e.to_string()))?;
        let presented = || format!("its {} key {}", kind.name(), known_hosts::fingerprint(key));
        match known.check(&endpoint.host, endpoint.port, key) {
            Verdict::Trusted => Ok(()),
            Verdict::Unknown => Err(refused(format!(
                "{file} (--git-known-hosts) has no key for it; add the host's keys, e.g. from ssh-keyscan -p {} {}, checked against what its operator publishes",
                endpoint.port, endpoint.host
            ))),
            Verdict::Changed => Err(refused(format!(
                "{} is not one that {file} (--git-known-hosts) holds for it: the host key changed, or something is between the agent and the host",
                presented()
            ))),
            Verdict::Revoked => Err(refused(format!(
                "{} is marked @revoked in {file} (--git-known-hosts)",
                presented()
            ))),
        }
    }
}

/// The passphrase: the file's first line, without its line break.
fn read_passphrase(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Credentials {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(user: &str, host: &str, port: u16) -> Option<Endpoint> {
        Some(Endpoint {
            user: user.into(),
            host: host.into(),
            port,
        })
    }

    #[test]
    fn ssh_urls_and_scp_like_paths_name_their_user_host_and_port() {
        let cases = [
            (
                "ssh://git@example.com/org/fleet.git",
                at("git", "example.com", 22),
            ),
            (
                "ssh://deploy@127.0.0.1:2222/srv/fleet.git",
                at("deploy", "127.0.0.1", 2222),
            ),
            ("ssh://example.com:/fleet.git", at("git", "example.com", 22)),
            (
                "ssh://me:pw@example.com:2222/fleet.git",
                at("me", "example.com", 2222),
            ),
            (
                "git+ssh://example.com/fleet.git",
                at("git", "example.com", 22),
            ),
            ("ssh+git://[::1]:2200/fleet.git", at("git", "::1", 2200)),
            (
                "git@example.com:org/fleet.git",
                at("git", "example.com", 22),
            ),
            ("me@[::1]:fleet.git", None),
            ("ssh://:2222/fleet.git", None),
            ("ssh://example.com:port/fleet.git", None),
            ("https://example.com/fleet.git", None),
            ("./fleet", None),
        ];
        for (url, expected) in cases {
            assert_eq!(endpoint(url), expected, "{url}");
        }
        assert!(is_ssh("git@example.com:org/fleet.git"));
        assert!(is_ssh("ssh://example.com/fleet.git"));
        assert!(!is_ssh("https://git@example.com/fleet.git"));
        assert!(!is_ssh("/srv/a@b:c/fleet"));
    }

    #[test]
    fn a_missing_or_wrong_key_file_is_named_at_start_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let known = dir.path().join("known_hosts");
        std::fs::write(&known, "").unwrap();
        let not_a_key = dir.path().join("id");
        std::fs::write(&not_a_key, "s3cr3t-not-a-key").unwrap();
        let err = SshAuth::load(&not_a_key, None, &known)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no private key"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        let err = SshAuth::load(&dir.path().join("absent"), None, &known)
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent"), "{err}");

        let key = dir.path().join("id_ed25519");
        std::fs::write(
            &key,
            "-----BEGIN OPENSSH PRIVATE KEY-----\ns3cr3t\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = SshAuth::load(&key, None, &known).unwrap_err().to_string();
        assert!(err.contains("no host key"), "{err}");
        std::fs::write(&known, "host ssh-ed25519 !!!\n").unwrap();
        let err = SshAuth::load(&key, None, &known).unwrap_err().to_string();
        assert!(err.contains("line 1: the key is not base64"), "{err}");
        let auth = SshAuth::load(&key, None, &known);
        assert!(!format!("{auth:?}").contains("s3cr3t"));
    }
}
