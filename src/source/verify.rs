//! `run --verify-commits --trusted-keys FILE`: a Git revision is served only when it is
//! signed by a trusted key. What is checked follows the followed reference, as Flux does:
//! the commit itself (a branch's head, the default branch, a pinned commit), or, when
//! following a tag, the annotated tag's own signature (`--verify-mode tag-and-head` checks
//! both).
//!
//! The trusted keys are one file holding SSH keys in git's `allowed_signers` format
//! (`principals [options] key-type base64 [comment]`, the namespace `git` as `git commit -S`
//! with `gpg.format=ssh` signs) and/or ASCII-armoured OpenPGP public keys. Verification is
//! pure Rust (the `ssh-key` crate for `sshsig`, rPGP for OpenPGP): no `gpg` or `ssh-keygen`
//! runs, and no keyring or agent on the host is consulted.
//!
//! A revision that does not verify is not an error of the source: the revision is read,
//! judged and refused, like one that does not validate, so the last good one keeps being
//! served and nothing is applied or pruned for it.

use std::path::{Path, PathBuf};

use git2::{ErrorCode, Oid, Repository};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;

use super::git::GitRef;

/// What is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The commit served.
    Head,
    /// The annotated tag followed (`--tag`).
    Tag,
    /// Both.
    TagAndHead,
}

/// `--verify-commits` as `run` was told.
#[derive(Clone, Debug)]
pub struct Policy {
    pub keys: TrustedKeys,
    pub mode: Mode,
}

/// Why the trusted-keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the trusted keys {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trusted keys {}: line {line}: {message}", path.display())]
    Ssh {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("trusted keys {}: OpenPGP key block {block}: {message}", path.display())]
    Pgp {
        path: PathBuf,
        block: usize,
        message: String,
    },
    #[error("trusted keys {}: no key in it", path.display())]
    Empty { path: PathBuf },
}

/// Who signed a revision, as the status and the plan show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The `allowed_signers` principal, or the OpenPGP key's first user ID.
    pub signer: String,
    /// `ssh` or `openpgp`.
    pub format: &'static str,
    /// The key's fingerprint (`SHA256:...` for SSH, hex for OpenPGP).
    pub key: String,
}

impl std::fmt::Display for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "signed by {} ({} key {})",
            self.signer, self.format, self.key
        )
    }
}

/// Why an object's signature is not trusted. Each has a bounded label ([`Why::reason`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Why {
    #[error("not signed")]
    Unsigned,
    #[error("a lightweight tag, which carries no signature (sign an annotated tag: git tag -s)")]
    NotAnnotated,
    #[error("signed by a key that is not trusted ({0})")]
    UntrustedKey(String),
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
    #[error("cannot read it: {0}")]
    Unreadable(String),
}

impl Why {
    pub fn reason(&self) -> &'static str {
        match self {
            Why::Unsigned => "unsigned",
            Why::NotAnnotated => "not_annotated",
            Why::UntrustedKey(_) => "untrusted_key",
            Why::BadSignature(_) => "bad_signature",
            Why::Unreadable(_) => "unreadable",
        }
    }
}

/// A revision refused by `--verify-commits`: which object and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {why}")]
pub struct Refused {
    /// The commit the reference points at (the revision refused).
    pub commit: String,
    /// `commit 0123456789ab` or `tag v1.2`.
    pub object: String,
    pub why: Why,
}

struct SshSigner {
    principals: String,
    key: ssh_key::PublicKey,
}

struct PgpSigner {
    name: String,
    key: SignedPublicKey,
}

/// The keys a revision may be signed with. Its `Debug` lists who they are.
#[derive(Clone)]
pub struct TrustedKeys {
    ssh: std::sync::Arc<Vec<SshSigner>>,
    pgp: std::sync::Arc<Vec<PgpSigner>>,
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ssh: Vec<&str> = self.ssh.iter().map(|s| s.principals.as_str()).collect();
        let pgp: Vec<&str> = self.pgp.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("TrustedKeys")
            .field("ssh", &ssh)
            .field("openpgp", &pgp)
            .finish()
    }
}

const PGP_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const PGP_END: &str = "-----END PGP PUBLIC KEY BLOCK-----";
/// Where git ends a signed object's data and starts its signature (tags; commits keep it
/// in the `gpgsig` header, which libgit2 separates).
const SIGNATURE_STARTS: [&[u8]; 2] = [
    b"-----BEGIN PGP SIGNATURE-----",
    b"-----BEGIN SSH SIGNATURE-----",
];

impl TrustedKeys {
    pub fn from_file(path: &Path) -> Result<TrustedKeys, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        TrustedKeys::parse(path, &text)
    }

    /// The OpenPGP blocks of `text`, then its `allowed_signers` lines outside them.
    pub fn parse(path: &Path, text: &str) -> Result<TrustedKeys, KeysError> {
        let (mut ssh, mut pgp) = (Vec::new(), Vec::new());
        let mut block: Option<String> = None;
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if let Some(armour) = &mut block {
                armour.push_str(line);
                armour.push('\n');
                if line == PGP_END {
                    pgp.push(pgp_signer(path, pgp.len() + 1, armour)?);
                    block = None;
                }
            } else if line == PGP_BEGIN {
                block = Some(format!("{line}\n"));
            } else if !line.is_empty() && !line.starts_with('#') {
                ssh.push(ssh_signer(line).map_err(|message| KeysError::Ssh {
                    path: path.to_path_buf(),
                    line: number,
                    message,
                })?);
            }
        }
        if block.is_some() {
            return Err(KeysError::Pgp {
                path: path.to_path_buf(),
                block: pgp.len() + 1,
                message: format!("no {PGP_END}"),
            });
        }
        if ssh.is_empty() && pgp.is_empty() {
            return Err(KeysError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(TrustedKeys {
            ssh: ssh.into(),
            pgp: pgp.into(),
        })
    }

    /// Who made `signature` (armoured, as git stores it) over `data`, if a trusted key did
    /// and it verifies.
    pub fn verify(&self, signature: &[u8], data: &[u8]) -> Result<Signed, Why> {
        if signature.starts_with(SIGNATURE_STARTS[1]) {
            self.verify_ssh(signature, data)
        } else if signature.starts_with(SIGNATURE_STARTS[0]) {
            self.verify_pgp(signature, data)
        } else {
            Err(Why::BadSignature(
                "neither an OpenPGP nor an SSH signature (X.509 signatures are not supported)"
                    .into(),
            ))
        }
    }

    fn verify_ssh(&self, signature: &[u8], data: &[u8]) -> Result<Signed, Why> {
        let sig = ssh_key::SshSig::from_pem(signature)
            .map_err(|e| Why::BadSignature(format!("unreadable SSH signature: {e}")))?;
        let fingerprint = ssh_key::PublicKey::from(sig.public_key().clone())
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string();
        let signer = self
            .ssh
            .iter()
            .find(|s| s.key.key_data() == sig.public_key())
            .ok_or_else(|| Why::UntrustedKey(format!("ssh key {fingerprint}")))?;
        signer
            .key
            .verify("git", data, &sig)
            .map_err(|e| Why::BadSignature(e.to_string()))?;
        Ok(Signed {
            signer: signer.principals.clone(),
            format: "ssh",
            key: fingerprint,
        })
    }

    fn verify_pgp(&self, signature: &[u8], data: &[u8]) -> Result<Signed, Why> {
        let (sig, _) = DetachedSignature::from_armor_single(signature)
            .map_err(|e| Why::BadSignature(format!("unreadable OpenPGP signature: {e}")))?;
        for signer in self.pgp.iter() {
            let key = &signer.key;
            let mut candidates = vec![(key.fingerprint(), key.verify_with(&sig, data))];
            for sub in &key.public_subkeys {
                let signs = sub.signatures.iter().any(|s| s.key_flags().sign());
                if signs {
                    candidates.push((sub.key.fingerprint(), sub.verify_with(&sig, data)));
                }
            }
            for (fingerprint, outcome) in candidates {
                match outcome {
                    Outcome::NotThisKey => {}
                    Outcome::Verified => {
                        return Ok(Signed {
                            signer: signer.name.clone(),
                            format: "openpgp",
                            key: format!("{fingerprint:X}"),
                        })
                    }
                    Outcome::Failed(e) => return Err(Why::BadSignature(e)),
                }
            }
        }
        let issuer = sig
            .signature
            .issuer_fingerprint()
            .first()
            .map(|f| format!("openpgp key {f:X}"))
            .or_else(|| {
                sig.signature.issuer_key_id().first().map(|k| {
                    let hex: String = k.as_ref().iter().map(|b| format!("{b:02X}")).collect();
                    format!("openpgp key id {hex}")
                })
            })
            .unwrap_or_else(|| "an OpenPGP key that does not name itself".into());
        Err(Why::UntrustedKey(issuer))
    }
}

enum Outcome {
    NotThisKey,
    Verified,
    Failed(String),
}

/// Verifying with one key: a signature whose issuer is another key is not this key's
/// failure.
trait VerifyWith {
    fn verify_with(&self, sig: &DetachedSignature, data: &[u8]) -> Outcome;
}

impl<K: pgp::types::VerifyingKey> VerifyWith for K {
    fn verify_with(&self, sig: &DetachedSignature, data: &[u8]) -> Outcome {
        let fingerprint = self.fingerprint();
        let key_id = self.legacy_key_id();
        let names_it = sig
            .signature
            .issuer_fingerprint()
            .iter()
            .any(|f| **f == fingerprint)
            || sig.signature.issuer_key_id().iter().any(|k| **k == key_id);
        if !names_it {
            return Outcome::NotThisKey;
        }
        match sig.verify(self, data) {
            Ok(()) => Outcome::Verified,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// One `allowed_signers` line: `principals [options] key-type base64 [comment]`.
fn ssh_signer(line: &str) -> Result<SshSigner, String> {
    let (principals, rest) = line
        .split_once(char::is_whitespace)
        .ok_or("expected principals, then a key")?;
    let rest = rest.trim_start();
    // Options come before the key type, which always starts `ssh-`, `ecdsa-` or `sk-`.
    let is_key_type = |s: &str| ["ssh-", "ecdsa-", "sk-"].iter().any(|p| s.starts_with(p));
    let (options, key) = if is_key_type(rest) {
        ("", rest)
    } else {
        split_options(rest)?
    };
    for option in split_unquoted(options, ',').filter(|o| !o.is_empty()) {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        match name.to_ascii_lowercase().as_str() {
            "namespaces" => {
                if !value.trim_matches('"').split(',').any(|n| n == "git") {
                    return Err("the key's namespaces leave out \"git\"".into());
                }
            }
            // Refused rather than ignored: trusting a key outside its validity period or a
            // CA's every certificate would be wider than the file says.
            other => return Err(format!("option {other:?} is not supported")),
        }
    }
    let key =
        ssh_key::PublicKey::from_openssh(key).map_err(|e| format!("not an SSH public key: {e}"))?;
    Ok(SshSigner {
        principals: principals.to_string(),
        key,
    })
}

/// `text` cut at each `separator` outside double quotes.
fn split_unquoted(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    text.split(move |c| {
        if c == '"' {
            quoted = !quoted;
        }
        c == separator && !quoted
    })
}

/// `options key...` where options may quote commas and spaces.
fn split_options(rest: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((&rest[..i], rest[i..].trim_start())),
            _ => {}
        }
    }
    Err("expected a key after the options".into())
}

fn pgp_signer(path: &Path, block: usize, armour: &str) -> Result<PgpSigner, KeysError> {
    let error = |message: String| KeysError::Pgp {
        path: path.to_path_buf(),
        block,
        message,
    };
    let (key, _) = SignedPublicKey::from_string(armour).map_err(|e| error(e.to_string()))?;
    key.verify_bindings()
        .map_err(|e| error(format!("its self-signatures do not verify: {e}")))?;
    if !key.details.revocation_signatures.is_empty() {
        return Err(error("the key is revoked".into()));
    }
    let name = key
        .details
        .users
        .first()
        .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
        .unwrap_or_else(|| format!("{:X}", key.fingerprint()));
    Ok(PgpSigner { name, key })
}

/// An object's armoured signature and the bytes it signs.
struct SignedObject {
    signature: Vec<u8>,
    data: Vec<u8>,
}

/// A commit's signature and the data it signs; `None` when unsigned.
fn commit_signature(repo: &Repository, commit: Oid) -> Result<Option<SignedObject>, Why> {
    match repo.extract_signature(&commit, None) {
        Ok((signature, data)) => Ok(Some(SignedObject {
            signature: signature.to_vec(),
            data: data.to_vec(),
        })),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(Why::Unreadable(e.message().to_string())),
    }
}

/// An annotated tag's signature and the data it signs: git appends the armoured signature
/// to the tag object, and signs everything before it.
fn tag_signature(repo: &Repository, tag: Oid) -> Result<Option<SignedObject>, Why> {
    let odb = repo
        .odb()
        .map_err(|e| Why::Unreadable(e.message().into()))?;
    let object = odb
        .read(tag)
        .map_err(|e| Why::Unreadable(e.message().into()))?;
    let raw = object.data();
    let start = SIGNATURE_STARTS
        .iter()
        .filter_map(|marker| {
            raw.windows(marker.len())
                .enumerate()
                .rev()
                .find(|(i, w)| w == marker && (*i == 0 || raw[i - 1] == b'\n'))
                .map(|(i, _)| i)
        })
        .max();
    Ok(start.map(|i| SignedObject {
        signature: raw[i..].to_vec(),
        data: raw[..i].to_vec(),
    }))
}

impl Policy {
    /// Checks the revision at `commit`, read by following `reference` in `repo`.
    pub fn check(
        &self,
        repo: &Repository,
        reference: &GitRef,
        commit: Oid,
    ) -> Result<Signed, Refused> {
        let commit_id = commit.to_string();
        let refused = |object: String, why| Refused {
            commit: commit_id.clone(),
            object,
            why,
        };
        let mut signed = None;
        if matches!(self.mode, Mode::Tag | Mode::TagAndHead) {
            let GitRef::Tag(name) = reference else {
                // `run` refuses the flags at start; a caller that gets here follows no tag.
                return Err(refused(
                    format!("commit {}", &commit_id[..12.min(commit_id.len())]),
                    Why::Unreadable(
                        "a tag's signature is asked for, but no tag is followed".into(),
                    ),
                ));
            };
            let object = format!("tag {name}");
            let tag = repo
                .refname_to_id(&format!("refs/tags/{name}"))
                .map_err(|e| refused(object.clone(), Why::Unreadable(e.message().into())))?;
            if repo.find_tag(tag).is_err() {
                return Err(refused(object, Why::NotAnnotated));
            }
            let SignedObject { signature, data } = tag_signature(repo, tag)
                .map_err(|why| refused(object.clone(), why))?
                .ok_or_else(|| refused(object.clone(), Why::Unsigned))?;
            signed = Some(
                self.keys
                    .verify(&signature, &data)
                    .map_err(|why| refused(object, why))?,
            );
        }
        if matches!(self.mode, Mode::Head | Mode::TagAndHead) {
            let object = format!("commit {}", &commit_id[..12.min(commit_id.len())]);
            let SignedObject { signature, data } = commit_signature(repo, commit)
                .map_err(|why| refused(object.clone(), why))?
                .ok_or_else(|| refused(object.clone(), Why::Unsigned))?;
            signed = Some(
                self.keys
                    .verify(&signature, &data)
                    .map_err(|why| refused(object, why))?,
            );
        }
        signed.ok_or_else(|| refused(commit_id.clone(), Why::Unsigned))
    }
}

/// Whether `commit` in `repo` is signed by one of `keys` (for `plan`: the commit alone).
pub fn check_commit(repo: &Repository, commit: Oid, keys: &TrustedKeys) -> Result<Signed, Why> {
    let SignedObject { signature, data } = commit_signature(repo, commit)?.ok_or(Why::Unsigned)?;
    keys.verify(&signature, &data)
}

#[cfg(test)]
mod tests;
