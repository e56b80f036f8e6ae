//! What the figures were taken on: CPU, cores, memory, kernel, toolchain, and what else
//! was running (the load average and the busiest other processes).

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn proc_field(file: &str, key: &str) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub kubectl: String,
}

impl Machine {
    pub fn describe() -> Self {
        let kib: f64 = proc_field("/proc/meminfo", "MemTotal")
            .trim_end_matches(" kB")
            .parse()
            .unwrap_or(0.0);
        Self {
            cpu: proc_field("/proc/cpuinfo", "model name"),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory: format!("{:.1} GiB", kib / 1024.0 / 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            rustc: output("rustc", &["-V"]),
            kubectl: output("kubectl", &["version", "--client"])
                .lines()
                .next()
                .unwrap_or("unknown")
                .to_string(),
        }
    }
}

/// The load average (1, 5, 15 minutes).
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The busiest processes other than this benchmark's, by CPU share since they started.
pub fn others() -> String {
    let me = std::process::id().to_string();
    let ps = output(
        "ps",
        &["-eo", "pid,ppid,pcpu,comm", "--sort=-pcpu", "--no-headers"],
    );
    let busy: Vec<String> = ps
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [pid, ppid, cpu, comm, ..] if *pid != me && *ppid != me => {
                    let cpu: f64 = cpu.parse().ok()?;
                    (cpu >= 5.0).then(|| format!("{comm} {cpu:.0}%"))
                }
                _ => None,
            }
        })
        .take(8)
        .collect();
    if busy.is_empty() {
        "nothing above 5% CPU".into()
    } else {
        busy.join(", ")
    }
}
