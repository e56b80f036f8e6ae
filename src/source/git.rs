//! A fleet directory in a remote Git repository, through `git2`: cloned once into a bare
//! repository in the cache directory, fetched on each sync, following a branch, a tag or
//! a pinned commit. A revision's files are read straight from the Git objects, never
//! checked out, so nothing in the repository (links, hooks, attributes) touches the disk.
//!
//! Transports: `file://`, `git://`, `http://` and `https://` (TLS through the system
//! OpenSSL, verified against the system roots plus `--git-ca-file`), and SSH (`ssh://` and
//! scp-like `user@host:path`, through libssh2: a deploy key, the host key checked against
//! `--git-known-hosts`; see [`ssh`]).
//!
//! Credentials (an HTTPS token, an SSH key and its passphrase) come from files or the
//! environment and are handed to libgit2 only when the server asks; they never appear in a
//! log or an error, and user information in the URL is cut from every message.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use git2::{Cred, CredentialType, FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};

use fleet_core::fleetdir::tree::MAX_FILES;
use fleet_core::fleetdir::FileTree;
use fleet_core::model::Diagnostic;

use super::Revision;

pub mod known_hosts;
pub mod ssh;

pub use ssh::SshAuth;

/// Environment variable holding an HTTPS token, when no token file is given.
pub const TOKEN_ENV: &str = "PSQL_FLEET_GIT_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("git source {url}: cannot prepare cache {}: {source}", cache.display())]
    Cache {
        url: String,
        cache: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("git source {url}: fetch failed: {message}")]
    Fetch { url: String, message: String },
    #[error("git source {url}: {reference} not found after fetch")]
    NotFound { url: String, reference: String },
    #[error("git source {url}: cannot read commit {commit}: {source}")]
    Read {
        url: String,
        commit: String,
        #[source]
        source: git2::Error,
    },
    #[error("git source {url}: {message}")]
    Ssh { url: String, message: &'static str },
    #[error("cannot use {} as the SSH key (--git-ssh-key): {message}", path.display())]
    SshKey { path: PathBuf, message: String },
    #[error("cannot use {} as the known_hosts file (--git-known-hosts): {message}", path.display())]
    KnownHosts { path: PathBuf, message: String },
    #[error("cannot use {} as the Git CA file: {message}", path.display())]
    CaFile { path: PathBuf, message: String },
    #[error("cannot read git credentials from {}: {source}", path.display())]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to follow in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitRef {
    /// The remote's default branch.
    Head,
    Branch(String),
    Tag(String),
    Commit(String),
}

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitRef::Head => write!(f, "HEAD"),
            GitRef::Branch(b) => write!(f, "branch {b}"),
            GitRef::Tag(t) => write!(f, "tag {t}"),
            GitRef::Commit(c) => write!(f, "commit {c}"),
        }
    }
}

/// Secrets for the remote, and for SSH the host keys it is trusted by. Its `Debug`
/// never shows them.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    token: Option<String>,
    ssh: Option<SshAuth>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ssh", &self.ssh)
            .finish()
    }
}

impl Credentials {
    /// A token from `token_file`, else from [`TOKEN_ENV`].
    pub fn load(token_file: Option<&Path>) -> Result<Self, Error> {
        let token = match token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| Error::Credentials {
                        path: path.to_path_buf(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
        };
        Ok(Self {
            username: None,
            token,
            ssh: None,
        })
    }

    /// These credentials with an SSH deploy key and the known_hosts it trusts hosts by.
    pub fn with_ssh(self, ssh: SshAuth) -> Self {
        Self {
            ssh: Some(ssh),
            ..self
        }
    }
}

/// A remote repository and what to follow in it.
#[derive(Clone, Debug)]
pub struct GitSource {
    pub url: String,
    pub cache_dir: PathBuf,
    pub reference: GitRef,
    pub credentials: Credentials,
}

/// The URL without user information, for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((_, host)) = rest.split_once('@') {
            return format!("{scheme}://{host}");
        }
        return url.to_string();
    }
    // The scp-like `user@host:path`.
    if let Some((user_host, path)) = url.split_once(':') {
        if let Some((_, host)) = user_host.rsplit_once('@') {
            return format!("{host}:{path}");
        }
    }
    url.to_string()
}

/// Starts libgit2. With HTTPS, git2's first use also writes the system's certificate
/// paths into the environment (`SSL_CERT_FILE`, `SSL_CERT_DIR`) for OpenSSL; changing the
/// environment while another thread reads it is undefined behaviour, so call this at
/// startup, before other threads exist.
pub fn init() {
    // Any git2 constructor runs its one-time initialisation; a configuration is the cheapest.
    let _ = git2::Config::new();
}

/// Refuses an SSH URL that names no host, or that comes without a key and a known_hosts
/// file, and SSH settings for a source that is not SSH, before libgit2 gives a vaguer
/// error (or none).
pub fn check_transport(url: &str, credentials: &Credentials) -> Result<(), Error> {
    let refuse = |message| {
        Err(Error::Ssh {
            url: redact_url(url),
            message,
        })
    };
    if !ssh::is_ssh(url) {
        if credentials.ssh.is_some() {
            return refuse("--git-ssh-key and --git-known-hosts are for ssh:// and user@host:path sources only");
        }
        return Ok(());
    }
    if ssh::endpoint(url).is_none() {
        return refuse(
            "not an SSH URL with a host (ssh://[user@]host[:port]/path or user@host:path)",
        );
    }
    if credentials.ssh.is_none() {
        return refuse("an SSH source needs a deploy key (--git-ssh-key) and the host's keys (--git-known-hosts); hosts are never trusted on first use");
    }
    Ok(())
}

/// Trusts the PEM certificates in `path` (in addition to the system roots) for the TLS of
/// every Git remote this process fetches from.
///
/// # Safety
/// libgit2 keeps this in process-wide state without a lock: call it before any other
/// thread can be using libgit2 (at startup, before the first fetch).
#[allow(
    unsafe_code,
    reason = "libgit2 keeps its CA setting in process-wide state"
)]
pub unsafe fn trust_ca_file(path: &Path) -> Result<(), Error> {
    let ca_error = |message: String| Error::CaFile {
        path: path.to_path_buf(),
        message,
    };
    // libgit2 would accept a missing or empty file and fail later, at the first fetch,
    // with no word about this file.
    let pem = std::fs::read_to_string(path).map_err(|e| ca_error(e.to_string()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ca_error("no PEM certificate in it".into()));
    }
    // SAFETY: the caller guarantees no other thread is using libgit2.
    unsafe { git2::opts::set_ssl_cert_file(path) }.map_err(|e| ca_error(e.message().into()))
}

impl GitSource {
    fn shown_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The bare repository for this URL in the cache directory.
    pub(crate) fn repository(&self) -> Result<Repository, Error> {
        let digest = Sha256::digest(self.url.as_bytes());
        let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let path = self.cache_dir.join(format!("{name}.git"));
        let cache_error = |source| Error::Cache {
            url: self.shown_url(),
            cache: path.clone(),
            source,
        };
        match Repository::open_bare(&path) {
            Ok(repo) => Ok(repo),
            Err(_) => {
                std::fs::create_dir_all(&self.cache_dir)
                    .map_err(|e| cache_error(git2::Error::from_str(&e.to_string())))?;
                Repository::init_bare(&path).map_err(cache_error)
            }
        }
    }

    /// Fetches and reads the revision the reference points at. Blocking: run it on a
    /// blocking thread.
    pub fn sync(&self) -> Result<Revision, Error> {
        check_transport(&self.url, &self.credentials)?;
        let repo = self.repository()?;
        let refspecs: Vec<String> = match &self.reference {
            GitRef::Head => vec!["+HEAD:refs/remotes/origin/HEAD".into()],
            GitRef::Branch(b) => vec![format!("+refs/heads/{b}:refs/remotes/origin/{b}")],
            GitRef::Tag(t) => vec![format!("+refs/tags/{t}:refs/tags/{t}")],
            // Servers need not serve a bare commit id; fetch everything and look it up.
            GitRef::Commit(_) => vec![
                "+refs/heads/*:refs/remotes/origin/*".into(),
                "+refs/tags/*:refs/tags/*".into(),
            ],
        };
        let pinned = match &self.reference {
            GitRef::Commit(c) => Oid::from_str(c)
                .ok()
                .filter(|oid| repo.find_commit(*oid).is_ok()),
            _ => None,
        };
        if pinned.is_none() {
            self.fetch(&repo, &refspecs)?;
        }
        let not_found = || Error::NotFound {
            url: self.shown_url(),
            reference: self.reference.to_string(),
        };
        let target = match &self.reference {
            GitRef::Head => repo.revparse_single("refs/remotes/origin/HEAD"),
            GitRef::Branch(b) => repo.revparse_single(&format!("refs/remotes/origin/{b}")),
            GitRef::Tag(t) => repo.revparse_single(&format!("refs/tags/{t}")),
            GitRef::Commit(c) => repo.revparse_single(c),
        }
        .map_err(|_| not_found())?;
        let commit = target.peel_to_commit().map_err(|_| not_found())?;
        let id = commit.id().to_string();
        let tree = read_tree(&repo, commit.id()).map_err(|source| Error::Read {
            url: self.shown_url(),
            commit: id.clone(),
            source,
        })?;
        Ok(Revision {
            id,
            tree,
            verified: None,
        })
    }

    fn fetch(&self, repo: &Repository, refspecs: &[String]) -> Result<(), Error> {
        let endpoint = ssh::endpoint(&self.url).filter(|_| ssh::is_ssh(&self.url));
        // libgit2 replaces the message of a refused host key with its own vaguer one;
        // the reason is kept here for the error instead.
        let host_key_refused: RefCell<Option<String>> = RefCell::new(None);
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(credential_callback(
            self.credentials.clone(),
            endpoint.clone(),
        ));
        if let Some(endpoint) = &endpoint {
            let ssh = self.credentials.ssh.as_ref();
            let refused = &host_key_refused;
            callbacks.certificate_check(move |cert, _host| {
                // check_transport lets no SSH source through without the file; still,
                // without it nothing is trusted.
                let verdict = match ssh {
                    Some(ssh) => ssh.check_host_key(endpoint, cert),
                    None => Err(format!("no --git-known-hosts for {}", endpoint.name())),
                };
                verdict
                    .map(|()| git2::CertificateCheckStatus::CertificateOk)
                    .map_err(|why| {
                        let error = git2::Error::new(
                            git2::ErrorCode::Certificate,
                            git2::ErrorClass::Ssh,
                            &why,
                        );
                        *refused.borrow_mut() = Some(why);
                        error
                    })
            });
        }
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks);
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| self.fetch_error(&e, None))?;
        let fetched = remote.fetch(refspecs, Some(&mut options), None);
        fetched.map_err(|e| self.fetch_error(&e, host_key_refused.take()))
    }

    fn fetch_error(&self, e: &git2::Error, host_key_refused: Option<String>) -> Error {
        if let Some(why) = host_key_refused {
            return Error::Fetch {
                url: self.shown_url(),
                message: why,
            };
        }
        // libgit2 may echo the URL it was given; keep any user information out.
        let mut message = e.message().replace(&self.url, &self.shown_url());
        if e.code() == git2::ErrorCode::Certificate && e.class() != git2::ErrorClass::Ssh {
            message.push_str(
                " (the remote's TLS certificate is not trusted: pass the CA that signed it with --git-ca-file)",
            );
        }
        // libssh2 says "unsupported private key format" for a wrong passphrase too.
        if e.class() == git2::ErrorClass::Ssh && message.contains("private key") {
            message.push_str(
                " (--git-ssh-key must be an OpenSSH or PEM private key, and --git-ssh-key-passphrase-file its passphrase when it has one)",
            );
        }
        Error::Fetch {
            url: self.shown_url(),
            message,
        }
    }
}

/// What libgit2 is given when the remote asks who we are: the SSH key (once: a key
/// refused once is refused again), the user name of an SSH URL, or the HTTPS token.
fn credential_callback(
    credentials: Credentials,
    endpoint: Option<ssh::Endpoint>,
) -> impl FnMut(&str, Option<&str>, CredentialType) -> Result<Cred, git2::Error> {
    let mut token_attempts = 0;
    let mut key_offered = false;
    move |_url, _username_from_url, allowed| {
        if let (Some(endpoint), Some(ssh)) = (&endpoint, &credentials.ssh) {
            if allowed.contains(CredentialType::SSH_KEY) {
                if key_offered {
                    // The user is not named: user information stays out of messages.
                    return Err(git2::Error::from_str(
                        "the remote refused the SSH key (--git-ssh-key): is its public key a deploy key of the repository, for the user the URL names (git when none)?",
                    ));
                }
                key_offered = true;
                return ssh.credential(&endpoint.user);
            }
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(&endpoint.user);
            }
        }
        // libgit2 asks again after a refusal; stop instead of looping.
        token_attempts += 1;
        if token_attempts > 3 {
            return Err(git2::Error::from_str(
                "the remote refused the credentials (the token from --git-token-file or $PSQL_FLEET_GIT_TOKEN)",
            ));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(token) = &credentials.token {
                let user = credentials.username.as_deref().unwrap_or("x-access-token");
                return Cred::userpass_plaintext(user, token);
            }
        }
        Err(git2::Error::from_str(
            "no credentials configured for this source",
        ))
    }
}

/// The fleet files of a commit, read from the object database.
pub fn read_tree(repo: &Repository, commit: Oid) -> Result<FileTree, git2::Error> {
    read_tree_at(repo, commit, None)
}

/// The fleet files under `subdir` of a commit (the whole tree when `None`), with paths
/// relative to it, read from the object database.
pub fn read_tree_at(
    repo: &Repository,
    commit: Oid,
    subdir: Option<&Path>,
) -> Result<FileTree, git2::Error> {
    let root = repo.find_commit(commit)?.tree()?;
    let tree = match subdir.filter(|d| !d.as_os_str().is_empty() && *d != Path::new(".")) {
        Some(dir) => repo.find_tree(root.get_path(dir)?.id())?,
        None => root,
    };
    let mut files = FileTree::default();
    let mut walk_error = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        let Some(name) = entry.name() else {
            return git2::TreeWalkResult::Ok;
        };
        let path = format!("{dir}{name}");
        if !FileTree::is_fleet_path(&path) {
            return git2::TreeWalkResult::Ok;
        }
        if entry.filemode() == 0o120000 {
            files.problems.push(Diagnostic::file(
                path,
                "symbolic link in the repository; fleet files must be regular files",
            ));
            return git2::TreeWalkResult::Ok;
        }
        if files.files.len() >= MAX_FILES {
            files.problems.push(Diagnostic::file(
                ".",
                format!("more than {MAX_FILES} fleet files"),
            ));
            return git2::TreeWalkResult::Abort;
        }
        match repo.find_blob(entry.id()) {
            Ok(blob) => files.insert(path, blob.content()),
            Err(e) => {
                walk_error = Some(e);
                return git2::TreeWalkResult::Abort;
            }
        }
        git2::TreeWalkResult::Ok
    })?;
    match walk_error {
        Some(e) => Err(e),
        None => Ok(files),
    }
}

#[cfg(test)]
pub(crate) mod tests;
