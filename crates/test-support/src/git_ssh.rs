//! Git over SSH for the tests: a real OpenSSH `sshd` on a loopback port of its own, run as
//! the current user (root in CI, or not), with host and client keys made by `ssh-keygen`
//! in a temporary folder, serving the bare repositories of this machine through the user's
//! shell and `git-upload-pack`, as a Git host does. Needs Debian's `openssh-server` (and
//! `openssh-client` for `ssh-keygen`); `.ci/run` installs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// Whether this machine can run the server; prints why not (for a test to skip on a
/// developer's machine), and fails under `$CI`, where `.ci/run` installed it.
pub fn available() -> bool {
    let missing: Vec<&str> = [SSHD, "ssh-keygen"]
        .into_iter()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing:?} not found (apt-get install openssh-server openssh-client)"
    );
    eprintln!("SKIPPED: {missing:?} not found (apt-get install openssh-server openssh-client)");
    false
}

/// Makes a key pair of `kind` (`ed25519`, `ecdsa`, `rsa`) at `path` and `path.pub`, with
/// `passphrase` (none when empty); returns the private key's path.
pub fn keygen(path: &Path, kind: &str, passphrase: &str) -> PathBuf {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            kind,
            "-N",
            passphrase,
            "-C",
            "psql-fleet-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -t {kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path.to_path_buf()
}

/// The public half of the key pair at `private`: `<type> <base64> <comment>`.
pub fn public_key(private: &Path) -> String {
    let mut path = private.as_os_str().to_owned();
    path.push(".pub");
    std::fs::read_to_string(PathBuf::from(path))
        .unwrap()
        .trim()
        .to_string()
}

/// An `sshd` on `127.0.0.1:<port>`, accepting the keys it was told to; stopped on drop.
pub struct SshServer {
    child: Child,
    pub port: u16,
    /// Who the clients log in as: the user running the tests.
    pub user: String,
    dir: tempfile::TempDir,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

impl SshServer {
    /// Starts a server whose host key is of `host_key_kind` (`ed25519`, `ecdsa`, `rsa`),
    /// accepting no client key yet (see [`SshServer::authorize`]).
    pub fn start(host_key_kind: &str) -> SshServer {
        let dir = tempfile::tempdir().unwrap();
        let host_key = keygen(&dir.path().join("host_key"), host_key_kind, "");
        std::fs::write(dir.path().join("authorized_keys"), "").unwrap();
        if is_root() {
            // sshd as root wants its privilege separation folder, which the package's
            // service would make at boot; nothing starts that service here.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let user = current_user();
        let port = crate::free_port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host_key}\n\
                 PidFile {pid}\n\
                 AuthorizedKeysFile {authorized}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 AllowUsers {user}\n\
                 UseDNS no\n\
                 LogLevel VERBOSE\n",
                host_key = host_key.display(),
                pid = dir.path().join("sshd.pid").display(),
                authorized = dir.path().join("authorized_keys").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        // -D: stay in the foreground, so that drop ends it; -e: log to the file above.
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{SSHD}: {e}"));
        let mut server = SshServer {
            child,
            port,
            user,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(exit) = server.child.try_wait().unwrap() {
                panic!("sshd ended at start ({exit}):\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// A temporary folder of its own, for keys and known_hosts files the test writes.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Makes a client key pair of `kind` named `name` in [`SshServer::dir`] and accepts
    /// it from now on; returns the private key's path.
    pub fn authorize(&self, name: &str, kind: &str, passphrase: &str) -> PathBuf {
        let key = keygen(&self.dir().join(name), kind, passphrase);
        let authorized = self.dir().join("authorized_keys");
        let mut keys = std::fs::read_to_string(&authorized).unwrap();
        keys.push_str(&public_key(&key));
        keys.push('\n');
        std::fs::write(&authorized, keys).unwrap();
        key
    }

    /// The host's public key: `<type> <base64> <comment>`.
    pub fn host_key(&self) -> String {
        public_key(&self.dir().join("host_key"))
    }

    /// The known_hosts line that pins this server: `[127.0.0.1]:<port> <type> <base64>`.
    pub fn known_hosts_line(&self) -> String {
        self.host_key_as(&format!("[127.0.0.1]:{}", self.port))
    }

    /// A known_hosts line giving this server's host key to `hosts` (a pattern list), as
    /// a file pinning another host's key, or this one's where another host is, says.
    pub fn host_key_as(&self, hosts: &str) -> String {
        let public = self.host_key();
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        format!("{hosts} {}", key.join(" "))
    }

    /// The `ssh://` URL of the repository at the absolute path `repo`.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }

    /// What the server logged (connections, accepted and refused keys).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default()
    }
}

/// Writes `lines` as a known_hosts file at `path`, and with `hashed` runs `ssh-keygen
/// -H` over it (host names replaced by `|1|salt|hash`); returns `path`.
pub fn known_hosts(path: &Path, lines: &[String], hashed: bool) -> PathBuf {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    if hashed {
        let out = Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-keygen -H: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with("|1|"), "not hashed: {text}");
    }
    path.to_path_buf()
}
