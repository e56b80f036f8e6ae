//! The `known_hosts` file an SSH Git source is pinned to (`--git-known-hosts`), in
//! OpenSSH's format, and the one decision made with it: does the key a host presented
//! belong to that host. Pure: the file's text in, a verdict out; the transport asks.
//!
//! Supported as OpenSSH reads them: plain host patterns (comma lists, `*` and `?`
//! wildcards, `!` negation, `[host]:port` for a port other than 22), hashed `|1|salt|hash`
//! entries (`ssh-keygen -H`), any key type (the key blobs are compared whole), and
//! `@revoked`. `@cert-authority` lines are skipped: libssh2 does not check host
//! certificates, so such a line cannot vouch for a plain key.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

/// A line that is neither blank, a comment, nor an entry.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Clone, Debug)]
struct Entry {
    marker: Marker,
    hosts: Hosts,
    key: Vec<u8>,
}

#[derive(Clone, Debug)]
enum Hosts {
    /// `|1|salt|hash`: HMAC-SHA1 of the host name under the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// Comma-separated patterns, each perhaps negated with `!`.
    Patterns(Vec<String>),
}

/// The entries of a `known_hosts` file.
#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

/// What the file says about a host and the key it presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// The key is marked `@revoked` for this host.
    Revoked,
    /// The file holds keys for this host, none of them this one.
    Changed,
    /// The file holds no key for this host.
    Unknown,
}

/// How OpenSSH names a host in `known_hosts`: `host` on port 22, else `[host]:port`.
pub fn host_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// `SHA256:<base64>`, as `ssh-keygen -l` prints a key's fingerprint: what a message may
/// show of a host key.
pub fn fingerprint(key: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(key)))
}

impl KnownHosts {
    pub fn parse(text: &str) -> Result<KnownHosts, ParseError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message| ParseError {
                line: index + 1,
                message,
            };
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let marker = match first {
                "@revoked" => Marker::Revoked,
                "@cert-authority" => Marker::CertAuthority,
                m if m.starts_with('@') => return Err(error("unknown marker")),
                _ => Marker::None,
            };
            if marker != Marker::None {
                first = fields.next().ok_or(error("no host pattern"))?;
            }
            let hosts = parse_hosts(first).ok_or(error("malformed hashed host"))?;
            let _key_type = fields.next().ok_or(error("no key type"))?;
            let key = fields.next().ok_or(error("no key"))?;
            let key = STANDARD
                .decode(key)
                .map_err(|_| error("the key is not base64"))?;
            entries.push(Entry { marker, hosts, key });
        }
        Ok(KnownHosts { entries })
    }

    /// Whether the file names any host at all (an empty file trusts nothing).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The verdict on `key` (the SSH wire-format public key blob) presented by `host` on
    /// `port`.
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> Verdict {
        let name = host_name(host, port);
        let mut known = false;
        let mut trusted = false;
        for entry in self.entries.iter().filter(|e| e.hosts.matches(&name)) {
            match entry.marker {
                Marker::Revoked if entry.key == key => return Verdict::Revoked,
                Marker::None => {
                    known = true;
                    trusted |= entry.key == key;
                }
                Marker::Revoked | Marker::CertAuthority => {}
            }
        }
        match (trusted, known) {
            (true, _) => Verdict::Trusted,
            (false, true) => Verdict::Changed,
            (false, false) => Verdict::Unknown,
        }
    }
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    let Some(hashed) = field.strip_prefix("|1|") else {
        return Some(Hosts::Patterns(
            field.split(',').map(str::to_ascii_lowercase).collect(),
        ));
    };
    let (salt, hash) = hashed.split_once('|')?;
    Some(Hosts::Hashed {
        salt: STANDARD.decode(salt).ok()?,
        hash: STANDARD.decode(hash).ok()?,
    })
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                ring::hmac::verify(&key, name.as_bytes(), hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    match pattern.strip_prefix('!') {
                        // A negated match rules the host out whatever else matches.
                        Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
                        Some(_) => {}
                        None => matched |= glob(pattern.as_bytes(), name.as_bytes()),
                    }
                }
                matched
            }
        }
    }
}

/// OpenSSH's host pattern match: `*` any run of characters, `?` any one.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two real ed25519 public keys (ssh-keygen -t ed25519), as a host presents them.
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKciZpibK7thEZzXRncla6TF4EV0EF2mJ45qCL7lqPrr";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIA1tfoRLEnbYxw/9Vm3SNwbStYK0dc9CKxrUyrBIxQx2";

    fn blob(key: &str) -> Vec<u8> {
        STANDARD.decode(key).unwrap()
    }

    #[test]
    fn a_plain_entry_trusts_its_key_for_its_host_and_port_only() {
        let file = format!(
            "# a comment\n\ngit.example.com ssh-ed25519 {KEY_A}\n[git.example.com]:2222 ssh-ed25519 {KEY_B} comment\n"
        );
        let hosts = KnownHosts::parse(&file).unwrap();
        assert_eq!(
            hosts.check("git.example.com", 22, &blob(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            hosts.check("GIT.example.com", 22, &blob(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            hosts.check("git.example.com", 22, &blob(KEY_B)),
            Verdict::Changed
        );
        assert_eq!(
            hosts.check("git.example.com", 2222, &blob(KEY_B)),
            Verdict::Trusted
        );
        assert_eq!(
            hosts.check("git.example.com", 2222, &blob(KEY_A)),
            Verdict::Changed
        );
        assert_eq!(
            hosts.check("git.example.com", 23, &blob(KEY_A)),
            Verdict::Unknown
        );
        assert_eq!(
            hosts.check("other.example.com", 22, &blob(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn patterns_match_as_openssh_matches_them() {
        let file = format!("*.example.com,!bad.example.com,10.0.0.? ssh-ed25519 {KEY_A}\n");
        let hosts = KnownHosts::parse(&file).unwrap();
        let key = blob(KEY_A);
        assert_eq!(hosts.check("git.example.com", 22, &key), Verdict::Trusted);
        assert_eq!(hosts.check("10.0.0.7", 22, &key), Verdict::Trusted);
        assert_eq!(hosts.check("10.0.0.17", 22, &key), Verdict::Unknown);
        assert_eq!(hosts.check("bad.example.com", 22, &key), Verdict::Unknown);
        assert_eq!(hosts.check("example.com", 22, &key), Verdict::Unknown);
    }

    #[test]
    fn a_hashed_entry_matches_the_name_it_was_hashed_from() {
        // `ssh-keygen -H` of "[127.0.0.1]:2222": HMAC-SHA1 of the name under the salt.
        let salt = b"0123456789abcdefghij";
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let hash = ring::hmac::sign(&key, b"[127.0.0.1]:2222");
        let file = format!(
            "|1|{}|{} ssh-ed25519 {KEY_A}\n",
            STANDARD.encode(salt),
            STANDARD.encode(hash.as_ref())
        );
        let hosts = KnownHosts::parse(&file).unwrap();
        assert_eq!(
            hosts.check("127.0.0.1", 2222, &blob(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            hosts.check("127.0.0.1", 2222, &blob(KEY_B)),
            Verdict::Changed
        );
        assert_eq!(hosts.check("127.0.0.1", 22, &blob(KEY_A)), Verdict::Unknown);
    }

    #[test]
    fn a_revoked_key_is_refused_even_when_also_listed() {
        let file = format!("@revoked * ssh-ed25519 {KEY_A}\nhost ssh-ed25519 {KEY_A}\n");
        let hosts = KnownHosts::parse(&file).unwrap();
        assert_eq!(hosts.check("host", 22, &blob(KEY_A)), Verdict::Revoked);
    }

    #[test]
    fn a_cert_authority_line_vouches_for_no_plain_key() {
        let file = format!("@cert-authority * ssh-ed25519 {KEY_A}\n");
        let hosts = KnownHosts::parse(&file).unwrap();
        assert_eq!(hosts.check("host", 22, &blob(KEY_A)), Verdict::Unknown);
    }

    #[test]
    fn malformed_lines_are_named_by_number() {
        for (text, message) in [
            ("host ssh-ed25519\n", "no key"),
            ("# c\nhost\n", "no key type"),
            ("host ssh-ed25519 not*base64\n", "the key is not base64"),
            ("|1|nobar ssh-ed25519 AAAA\n", "malformed hashed host"),
            ("@marker host ssh-ed25519 AAAA\n", "unknown marker"),
        ] {
            let err = KnownHosts::parse(text).unwrap_err();
            assert_eq!(err.message, message, "{text}");
        }
        assert_eq!(KnownHosts::parse("# c\nhost\n").unwrap_err().line, 2);
    }

    #[test]
    fn names_and_fingerprints_are_openssh_s() {
        assert_eq!(host_name("Git.Example.com", 22), "git.example.com");
        assert_eq!(host_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert!(fingerprint(&blob(KEY_A)).starts_with("SHA256:"));
        assert!(!fingerprint(&blob(KEY_A)).ends_with('='));
    }
}
