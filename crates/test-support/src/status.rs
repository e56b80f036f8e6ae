//! Reading what the agent reports, without an agent: judging a status report and
//! picking a series out of a Prometheus exposition.

use psql_fleet::status::StatusReport;

/// Whether each named cluster has exactly `claims` claims, all ready with their Usage.
pub fn converged(report: &StatusReport, clusters: &[String], claims: usize) -> bool {
    clusters.iter().all(|name| {
        report.clusters.get(name).is_some_and(|c| {
            c.claims.len() == claims && c.claims.iter().all(|c| c.ready && c.usage_present)
        })
    })
}

/// The value of the series `name` carrying (at least) `labels` in a Prometheus text
/// exposition; the first such series when several match.
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
        if series_name != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}
