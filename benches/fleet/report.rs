//! The figures as Markdown: printed, and written to BENCHMARKS.md by a full run.

use std::fmt::Write;
use std::time::Duration;

use crate::agent::{Outcome, SCRAPE_INTERVAL};
use crate::baseline::Loop;
use crate::machine::{self, Machine};
use crate::procs::Usage;
use crate::simapi::{by_verb, total, writes};
use crate::stats::{ms, secs};
use crate::watchers::WatchFigures;

/// The idle cost measured before and after the changes of issue 16, point 1: history, not
/// this run's figures (this run's idle CPU is in the steady-state table).
const IDLE: &str = include_str!("idle.md");
/// Measured by `cargo bench --bench failover`, which prints the table of a new run.
const FAILOVER: &str = include_str!("failover.md");

/// What the figures leave out and what limits them, as far as it is known.
const LIMITS: &str = "## What limits the figures\n
- **Agent memory** is about 58 KiB per cluster at the peak (569-580 MiB at 10,000 \
clusters, 2026-12-05) and about the same once idle (566-575 MiB). Each cluster has one \
HTTP/2 (ALPN) connection over TLS, which carries both watches and the applies (kube's \
default HTTP/1.1 stack took three), driven through h2 itself with kube's layers (auth, \
retries, headers) but without kube's per-client request buffer or hyper's dispatch channel, \
and without TLS session tickets. h2 is 0.4.21 with a patch carried in `crates/vendor/h2` \
until upstream has it: a connection's buffers start small (1 KiB to read, 1 KiB to \
write, none for Huffman decoding, where h2's constants were 28 KiB) and its \
frame queues give back their room once drained. The live view keeps served objects as \
compact JSON without `metadata.managedFields` or `status`, the watches are read without \
kube-runtime's watcher (no line buffer held between events, one decode per event), and a \
pass waits for its write permit in a 576-byte future. A heaptrack run once idle at 1,000 \
clusters (2026-12-05, glibc's malloc, before the frame queues were given back: 45.6 MiB) \
names the largest of what is left per cluster: tasks 4.5 KiB (the worker 2.9, the \
connection 1.3), rustls' 4 KiB record buffer (a constant of rustls), the live view about 5 \
KiB, the two watch streams 2.1 KiB, h2's stream slab 1.3 KiB.
- **Drift correction** takes back the fields another manager edited with a forced apply \
(correcting is the one apply that forces; a new revision forces only under `force: true`). \
Each correction is one apply after the watch reports the edit, so its latency is the watch \
delivery plus one round trip, queued behind the other corrected clusters (at most 8 at once).
- **Rollout gating** is judged on a 250 ms tick, not on every worker's report: judging and \
publishing wave status is linear in the fleet, and doing it per report made the 1,000-cluster \
cold start quadratic (14.3 s; 7.2 s once moved to the tick, found with `perf record`).
- **Steady state** is measured over one window (120 s by default): the watches stay open \
for several minutes, so a window that short sees no watch re-opened; over hours expect two \
watch requests per cluster every few minutes, still no writes. The agent's CPU at steady \
state at 1,000 clusters is explained in \"Idle cost at steady state\" above.
- **Cold start** figures include the agent reading and validating the fleet; the harness \
polls `/api/v1/status/summary` (served by the agent, so counted in its CPU) every 100 ms: \
a few hundred bytes of counts. Until 2026-12-05 it read the whole status, every 1 s at \
10,000 clusters (3.5 MB and about 20 ms of the agent's CPU a read): about 4% of the agent's \
CPU to all ready there, measured back to back. At 1,000 \
clusters the simulator and the agent share the 2 cores, and the simulator takes the larger \
share (about 7 s of CPU to the agent's 4.5 s: it validates every write against the CRD's \
schema and CEL rules and tracks managed fields, as an API server does); at most 8 \
clusters are written at once (`--max-concurrency`, default).
- **The kubectl loop** starts three processes (two kubectl, one render) per cluster and \
waits for each cluster in turn (or for 8 at a time, with `xargs -P 8`); its per-cluster time is mostly kubectl start-up and \
discovery. With a provider delay the loop would add that delay per cluster.
";

pub struct Render {
    pub runs: usize,
    pub clusters: usize,
    pub claims: usize,
    pub validate: Duration,
    pub render: Duration,
}

pub enum PlanFigure {
    /// This build has no `plan` command.
    Pending,
    Measured(Duration),
    Failed(String),
}

pub struct SimFigures {
    pub clusters: usize,
    pub started_in: Duration,
    pub first_request: Duration,
    pub idle: Usage,
    pub watch: WatchFigures,
}

pub struct Report {
    full: bool,
    started: String,
    load_start: String,
    others_start: String,
    load_end: String,
    others_end: String,
    elapsed: std::time::Instant,
    pub render: Option<Render>,
    pub plan: PlanFigure,
    pub sim: Option<SimFigures>,
    pub agent: Vec<Outcome>,
    pub baseline: Vec<Loop>,
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

impl Report {
    pub fn start(full: bool) -> Self {
        Self {
            full,
            started: jiff::Timestamp::now()
                .strftime("%Y-%m-%d %H:%M UTC")
                .to_string(),
            load_start: machine::load(),
            others_start: machine::others(),
            load_end: String::new(),
            others_end: String::new(),
            elapsed: std::time::Instant::now(),
            render: None,
            plan: PlanFigure::Pending,
            sim: None,
            agent: Vec::new(),
            baseline: Vec::new(),
        }
    }

    pub fn finish(&mut self) {
        self.load_end = machine::load();
        self.others_end = machine::others();
    }

    fn agent_at(&self, clusters: usize, per: usize, ready_after: Duration) -> Option<&Outcome> {
        self.agent.iter().find(|o| {
            o.scenario.clusters == clusters
                && o.scenario.claims_per_cluster == per
                && o.scenario.ready_after == ready_after
        })
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let m = Machine::describe();
        let _ = writeln!(o, "# Benchmarks\n");
        let _ = writeln!(
            o,
            "Measured by `make bench` ({}) on {}, in {:.0} s. Every figure is one run on a \
             shared machine: read them as orders of magnitude, not to the millisecond.\n",
            if self.full { "full run" } else { "smoke run" },
            self.started,
            self.elapsed.elapsed().as_secs_f64()
        );
        let _ = writeln!(o, "## Machine\n");
        let _ = writeln!(o, "| | |\n| --- | --- |");
        let _ = writeln!(o, "| CPU | {} |", m.cpu);
        let _ = writeln!(o, "| cores | {} |", m.cores);
        let _ = writeln!(o, "| memory | {} |", m.memory);
        let _ = writeln!(o, "| kernel | {} |", m.kernel);
        let _ = writeln!(o, "| rustc | {} |", m.rustc);
        let _ = writeln!(o, "| kubectl | {} |", m.kubectl);
        let _ = writeln!(
            o,
            "| load average (1, 5, 15 min) | {} at the start, {} at the end |",
            self.load_start, self.load_end
        );
        let _ = writeln!(
            o,
            "| also running (CPU share over each process's life) | start: {}; end: {} |\n",
            self.others_start, self.others_end
        );
        self.targets(&mut o);
        self.simulator(&mut o);
        self.agent(&mut o);
        self.baseline(&mut o);
        self.render(&mut o);
        o.push_str(IDLE);
        o.push('\n');
        o.push_str(FAILOVER);
        o.push('\n');
        o.push_str(LIMITS);
        o
    }

    fn targets(&self, o: &mut String) {
        let _ = writeln!(o, "## Targets\n");
        let _ = writeln!(o, "| target | measured | |\n| --- | --- | --- |");
        let zero = Duration::ZERO;
        if let Some(a) = self.agent_at(1000, 1, zero) {
            let _ = writeln!(
                o,
                "| 1,000 clusters cold to ready < 10 s (ready delay 0) | {} | {} |",
                secs(a.cold),
                met(a.cold < Duration::from_secs(10))
            );
            let _ = writeln!(
                o,
                "| agent RSS < 200 MiB at 1,000 clusters | peak {} | {} |",
                mib(a.agent_end.peak_rss_kib),
                met(a.agent_end.peak_mib() < 200.0)
            );
        }
        if let Some((l, a, ratio)) = self.best_ratio(1) {
            let _ = writeln!(
                o,
                "| ≥ 50× faster than the kubectl loop | {ratio:.0}× at {} clusters ({} vs {}) | {} |",
                l.clusters,
                secs(a.cold),
                secs(l.elapsed),
                met(ratio >= 50.0)
            );
        }
        if let Some((l, a, ratio)) = self.best_ratio(crate::PARALLEL) {
            let _ = writeln!(
                o,
                "| ≥ 30× faster than the kubectl loop {} at a time | {ratio:.0}× at {} clusters ({} vs {}) | {} |",
                l.parallel,
                l.clusters,
                secs(a.cold),
                secs(l.elapsed),
                met(ratio >= 30.0)
            );
        }
        for (clusters, cpu_target) in [(1000, 1.0), (10_000, 5.0)] {
            let Some(s) = self
                .agent_at(clusters, 1, zero)
                .and_then(|a| a.steady.as_ref())
            else {
                continue;
            };
            let share = 100.0 * s.agent_cpu_secs / s.window.as_secs_f64();
            let _ = writeln!(
                o,
                "| idle agent CPU < {cpu_target:.0}% of a core at {} clusters | {share:.2}% ({:.2} s over {:.0} s) | {} |",
                thousands(clusters),
                s.agent_cpu_secs,
                s.window.as_secs_f64(),
                met(share < cpu_target)
            );
            let scraped = s.share_scraped_every(SCRAPE_INTERVAL);
            let _ = writeln!(
                o,
                "| the same, scraped by Prometheus every 15 s | {scraped:.2}% ({:.0} ms a scrape of {} series) | {} |",
                1000.0 * s.scrape.agent_cpu_secs,
                thousands(s.scrape.series),
                met(scraped < cpu_target)
            );
        }
        if let Some(a) = self.agent_at(10_000, 1, zero) {
            let _ = writeln!(
                o,
                "| 10,000 clusters cold to all ready < 60 s | {} (agent CPU {:.1} s, {:.2} ms per cluster) | {} |",
                secs(a.cold),
                a.at_ready.cpu_secs,
                1000.0 * a.at_ready.cpu_secs / 10_000.0,
                met(a.cold < Duration::from_secs(60))
            );
            let _ = writeln!(
                o,
                "| agent memory < 64 KiB per cluster (< 700 MiB at 10,000) | peak {} ({:.0} KiB per cluster) | {} |",
                mib(a.agent_end.peak_rss_kib),
                a.agent_end.peak_rss_kib as f64 / 10_000.0,
                met(a.agent_end.peak_mib() < 700.0)
            );
        }
        let steady: Vec<&Outcome> = self.agent.iter().filter(|a| a.steady.is_some()).collect();
        if !steady.is_empty() {
            let w: u64 = steady
                .iter()
                .filter_map(|a| a.steady.as_ref())
                .map(|s| writes(&s.requests))
                .sum();
            let _ = writeln!(
                o,
                "| zero writes at steady state | {w} writes over {} runs | {} |",
                steady.len(),
                met(w == 0)
            );
        }
        let drifts: Vec<&Outcome> = self.agent.iter().filter(|a| a.drift.is_some()).collect();
        if let Some(worst) = drifts
            .iter()
            .filter_map(|a| a.drift.as_ref().map(|d| (a, d)))
            .max_by_key(|(_, d)| (d.edited - d.corrected, d.latency.p99))
        {
            let (a, d) = worst;
            let _ = writeln!(
                o,
                "| drift corrected within 2 s p99 | worst run ({} clusters × {}): {}/{} corrected, p99 {} | {} |",
                a.scenario.clusters,
                a.scenario.claims_per_cluster,
                d.corrected,
                d.edited,
                ms(d.latency.p99),
                met(d.corrected == d.edited && d.latency.p99 < Duration::from_secs(2))
            );
        }
        let plan = "| plan < 2 s (one-line pin change, 1,000 clusters)";
        let _ = match &self.plan {
            PlanFigure::Measured(p) => writeln!(
                o,
                "{plan} | {} (whole process, median) | {} |",
                secs(*p),
                met(*p < Duration::from_secs(2))
            ),
            PlanFigure::Pending => writeln!(
                o,
                "{plan} | pending: this build has no `psql-fleet plan` | - |"
            ),
            PlanFigure::Failed(e) => writeln!(o, "{plan} | failed: {e} | **not met** |"),
        };
        if let Some(s) = &self.sim {
            let _ = writeln!(
                o,
                "| simulator: {} clusters start < 5 s, idle RSS < 300 MiB | {}, {} | {} |",
                thousands(s.clusters),
                secs(s.started_in + s.first_request),
                mib(s.idle.rss_kib),
                met(s.started_in + s.first_request < Duration::from_secs(5)
                    && s.idle.rss_mib() < 300.0)
            );
        }
        let _ = writeln!(o);
    }

    /// The loop `parallel` clusters at a time against the agent, at the largest size both ran.
    fn best_ratio(&self, parallel: usize) -> Option<(&Loop, &Outcome, f64)> {
        self.baseline
            .iter()
            .filter(|l| l.parallel == parallel)
            .filter_map(|l| {
                self.agent_at(l.clusters, 1, Duration::ZERO)
                    .map(|a| (l, a, l.elapsed.as_secs_f64() / a.cold.as_secs_f64()))
            })
            .max_by_key(|(l, _, _)| l.clusters)
    }

    fn simulator(&self, o: &mut String) {
        let Some(s) = &self.sim else { return };
        let _ = writeln!(o, "## Simulator\n");
        let _ = writeln!(
            o,
            "`psql-fleet sim --clusters {}` in its own process: from spawn until it printed where it \
             listens (every kubeconfig and Cluster file written), then until the last cluster \
             answered `GET /version`; its resident memory a second later, before any other request.\n",
            s.clusters
        );
        let _ = writeln!(
            o,
            "| clusters | start | first request | idle RSS |\n| ---: | ---: | ---: | ---: |"
        );
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |\n",
            thousands(s.clusters),
            secs(s.started_in),
            ms(s.first_request),
            mib(s.idle.rss_kib)
        );
        if let Some(a) = self.agent_at(1000, 1, Duration::ZERO) {
            let _ = writeln!(
                o,
                "With every one of 1,000 clusters in use (after the agent's 1,000-cluster run, \
                 steady state and drift): simulator RSS {} (peak {}), CPU {:.1} s.\n",
                mib(a.sim_end.rss_kib),
                mib(a.sim_end.peak_rss_kib),
                a.sim_end.cpu_secs
            );
        }
        let w = &s.watch;
        let _ = writeln!(
            o,
            "Watchers: {} concurrent watches on namespaces (each its own client and connection) on \
             each of {} clusters spread over the {}, {} watches in all, opened in {}. Then {} rounds: \
             one Namespace created on each of those clusters at once; time from sending the writes \
             until each watcher received its event. Meanwhile `GET /version` every 100 ms on a \
             cluster without watchers.\n",
            w.per_cluster,
            w.clusters,
            thousands(s.clusters),
            thousands(w.clusters * w.per_cluster),
            secs(w.opened_in),
            w.rounds
        );
        let _ = writeln!(
            o,
            "| events delivered | latency p50 | p99 | max | other cluster's GET p50 | max | simulator RSS with the watches |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        let _ = writeln!(
            o,
            "| {}/{} | {} | {} | {} | {} | {} | {:.0} MiB |\n",
            thousands(w.delivered),
            thousands(w.expected),
            ms(w.latency.p50),
            ms(w.latency.p99),
            ms(w.latency.max),
            ms(w.probe.p50),
            ms(w.probe.max),
            w.sim_rss_mib
        );
    }

    fn agent(&self, o: &mut String) {
        if self.agent.is_empty() {
            return;
        }
        let _ = writeln!(o, "## Agent\n");
        let _ = writeln!(
            o,
            "`psql-fleet run` in its own process against a fresh simulator (its own process), from \
             spawn until `/api/v1/status/summary` (polled every 100 ms) counts every claim ready with \
             its Usage. Requests are the simulator's per-verb counters over that time (`discovery` is \
             /version, /api, /apis and OpenAPI); memory is the agent's VmHWM, CPU its user + system \
             time.\n"
        );
        let _ = writeln!(
            o,
            "| clusters | claims | provider ready delay | cold to all ready | requests by verb | requests per cluster | agent peak RSS | agent CPU |\n| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
        );
        for a in &self.agent {
            let sc = &a.scenario;
            let _ = writeln!(
                o,
                "| {} | {} | {} s | {} | {} | {:.1} | {} | {:.2} s |",
                thousands(sc.clusters),
                thousands(sc.claims()),
                sc.ready_after.as_secs_f64(),
                secs(a.cold),
                by_verb(&a.cold_requests),
                total(&a.cold_requests) as f64 / sc.clusters as f64,
                mib(a.at_ready.peak_rss_kib),
                a.at_ready.cpu_secs
            );
        }
        let _ = writeln!(o);
        let steady: Vec<&Outcome> = self.agent.iter().filter(|a| a.steady.is_some()).collect();
        if !steady.is_empty() {
            let _ = writeln!(
                o,
                "### Steady state\n\nA window starting 1 s after all claims were ready, nothing \
                 changing. Writes are the simulator's create/update/patch/apply/delete counts, and \
                 separately its audit log; requests include the watches' reconnects. After the \
                 window, ten reads of `/metrics` as Prometheus makes them, timed by the agent's \
                 CPU; \"scraped every 15 s\" adds one such read per 15 s of the window to its CPU.\n"
            );
            let _ = writeln!(
                o,
                "| clusters | claims | window | writes | audit log entries | requests by verb | requests per cluster per minute | agent CPU | agent CPU a scrape of /metrics (series, size) | agent CPU scraped every 15 s | agent peak RSS (whole run) |\n| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
            );
            for a in steady {
                let s = a.steady.as_ref().expect("filtered");
                let minutes = s.window.as_secs_f64() / 60.0;
                let _ = writeln!(
                    o,
                    "| {} | {} | {:.0} s | {} | {} | {} | {:.2} | {:.2} s | {:.0} ms ({}, {:.1} MB) | {:.2}% of a core | {} |",
                    thousands(a.scenario.clusters),
                    thousands(a.scenario.claims()),
                    s.window.as_secs_f64(),
                    writes(&s.requests),
                    s.audited_writes,
                    by_verb(&s.requests),
                    total(&s.requests) as f64 / a.scenario.clusters as f64 / minutes,
                    s.agent_cpu_secs,
                    1000.0 * s.scrape.agent_cpu_secs,
                    thousands(s.scrape.series),
                    s.scrape.bytes as f64 / 1e6,
                    s.share_scraped_every(SCRAPE_INTERVAL),
                    mib(a.agent_end.peak_rss_kib)
                );
            }
            let _ = writeln!(o);
        }
        let drifts: Vec<&Outcome> = self.agent.iter().filter(|a| a.drift.is_some()).collect();
        if !drifts.is_empty() {
            let _ = writeln!(
                o,
                "### Drift\n\nAfter the steady state: the chart version of that many StackGres \
                 Releases changed at once through the simulator's admin API as the field manager \
                 `kubectl-edit` (a JSON merge patch, as `kubectl edit` does). Time from each edit's \
                 answer until a watch on that Release saw the fleet's version again (20 s limit; 5 s in the smoke run).\n"
            );
            let _ = writeln!(
                o,
                "| clusters | claims | Releases edited | corrected | p50 | p99 | max | when not corrected, the agent reported |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for a in drifts {
                let d = a.drift.as_ref().expect("filtered");
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    thousands(a.scenario.clusters),
                    thousands(a.scenario.claims()),
                    d.edited,
                    d.corrected,
                    ms(d.latency.p50),
                    ms(d.latency.p99),
                    ms(d.latency.max),
                    d.note.as_deref().unwrap_or("-").replace('|', "\\|")
                );
            }
            let _ = writeln!(o);
        }
    }

    fn baseline(&self, o: &mut String) {
        if self.baseline.is_empty() {
            return;
        }
        let _ = writeln!(o, "## Against the kubectl loop\n");
        let _ = writeln!(
            o,
            "`benches/fleet/kubectl-loop.sh`: for each cluster in turn, `psql-fleet render --cluster`, \
             `kubectl apply --server-side`, `kubectl wait --for=condition=Ready`, then apply again \
             with the Usage; against a fresh simulator with provider ready delay 0 (the loop's best \
             case: every cluster's delay would add up in the loop, while the agent waits for all \
             clusters at once). One cluster after another, and {} at a time (`xargs -P {}`, the \
             fairer baseline). The agent's time is its cold start at the same size above.\n",
            crate::PARALLEL,
            crate::PARALLEL
        );
        let _ = writeln!(
            o,
            "| clusters | at a time | kubectl loop | per cluster | agent | agent faster by | loop requests by verb |\n| ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        );
        for l in &self.baseline {
            let agent = self.agent_at(l.clusters, 1, Duration::ZERO);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                thousands(l.clusters),
                l.parallel,
                secs(l.elapsed),
                ms(l.elapsed / l.clusters as u32),
                agent.map_or("-".into(), |a| secs(a.cold)),
                agent.map_or("-".into(), |a| format!(
                    "{:.0}×",
                    l.elapsed.as_secs_f64() / a.cold.as_secs_f64()
                )),
                by_verb(&l.requests)
            );
        }
        let sequential = || self.baseline.iter().filter(|l| l.parallel == 1);
        let largest = sequential().map(|l| l.clusters).max().unwrap_or(0);
        if let (Some(l), Some(a)) = (
            sequential().find(|l| l.clusters == largest),
            self.agent_at(1000, 1, Duration::ZERO),
        ) {
            if largest < 1000 {
                let per = l.elapsed.as_secs_f64() / l.clusters as f64;
                let est = per * 1000.0;
                let _ = writeln!(
                    o,
                    "| 1,000 (extrapolated: {:.0} ms per cluster × 1,000, not run) | 1 | ~{est:.0} s | {:.0} ms | {} | ~{:.0}× | - |",
                    per * 1000.0,
                    per * 1000.0,
                    secs(a.cold),
                    est / a.cold.as_secs_f64()
                );
            }
        }
        let _ = writeln!(o);
    }

    fn render(&self, o: &mut String) {
        let Some(r) = &self.render else { return };
        let _ = writeln!(o, "## Render\n");
        let _ = writeln!(
            o,
            "The CLI as a whole process (median of {} runs) on a fleet directory of {} clusters and {} \
             claims; `cargo bench --bench render` (run first by `make bench`) times the same work \
             inside one process.\n",
            r.runs,
            thousands(r.clusters),
            thousands(r.claims)
        );
        let _ = writeln!(
            o,
            "| command | claims | wall time |\n| --- | ---: | ---: |\n| `psql-fleet validate` | {} | {} |\n| `psql-fleet render -o json --assume-ready` | {} | {} |\n",
            thousands(r.claims),
            secs(r.validate),
            thousands(r.claims),
            secs(r.render)
        );
        if let Ok(table) = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/bench-render.md"
        )) {
            let _ = writeln!(
                o,
                "In one process (`cargo bench --bench render`):\n\n{table}"
            );
        }
    }
}
