//! The processes under test: the simulator and the agent run as separate processes of the
//! release binary, so each one's memory and CPU are read apart from the other's (and from
//! this driver's) in `/proc/<pid>/status` and `/proc/<pid>/stat`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        Ok(Self {
            child,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn usage(&self) -> Result<Usage> {
        Usage::of(self.pid()).with_context(|| format!("cannot read the {}'s usage", self.name))
    }

    /// Fails if the process has already exited (it should run until stopped).
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("the {} exited early: {status}", self.name),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the kernel accounts for one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// VmHWM: the peak resident set.
    pub peak_rss_kib: u64,
    pub rss_kib: u64,
    /// utime + stime.
    pub cpu_secs: f64,
}

impl Usage {
    pub fn of(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the parenthesised command name start at field 3 (state);
        // utime and stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Self {
            peak_rss_kib: field("VmHWM:"),
            rss_kib: field("VmRSS:"),
            cpu_secs: (ticks(14) + ticks(15)) as f64 / clock_ticks() as f64,
        })
    }

    pub fn peak_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A running `psql-fleet sim`.
pub struct Sim {
    pub proc: Proc,
    pub dir: PathBuf,
    pub admin_url: String,
    pub names: Vec<String>,
    /// From spawn until the simulator printed where it listens (files written, bound).
    pub started_in: Duration,
}

impl Sim {
    pub fn start(bin: &Path, clusters: usize, ready_after: Duration, dir: &Path) -> Result<Self> {
        let start = Instant::now();
        let mut proc = Proc::spawn(
            "simulator",
            Command::new(bin)
                .args(["sim", "--clusters", &clusters.to_string(), "--out"])
                .arg(dir)
                .args(["--ready-after", &format!("{}ms", ready_after.as_millis())])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )?;
        let stdout = proc
            .child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no simulator stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut admin_url = None;
        for line in lines.by_ref() {
            let line = line?;
            if let Some(rest) = line.trim().strip_prefix("admin API:") {
                admin_url = rest.split_whitespace().next().map(String::from);
                break;
            }
        }
        let started_in = start.elapsed();
        let admin_url = admin_url.ok_or_else(|| anyhow!("the simulator did not start"))?;
        // Keep draining stdout so the simulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let mut names: Vec<String> = std::fs::read_dir(dir.join("clusters"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".yaml"))
                    .map(String::from)
            })
            .collect();
        names.sort();
        if names.len() != clusters {
            bail!(
                "the simulator wrote {} cluster files, not {clusters}",
                names.len()
            );
        }
        Ok(Self {
            proc,
            dir: dir.to_path_buf(),
            admin_url,
            names,
            started_in,
        })
    }

    pub fn kubeconfig(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("{cluster}.yaml"))
    }
}

/// A port that was free a moment ago, for a child process to listen on.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
