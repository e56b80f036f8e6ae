//! Rollout windows (`spec.rollout.windows`, and per wave): when a wave may start, in the
//! shape of Argo CD's sync windows (`kind: allow|deny`, a cron `schedule`, a `duration`,
//! a `timeZone`), so that its users read them at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::diagnostic::{Diagnostic, Origin};
use super::duration;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Waves start only inside one (when any allow window applies).
    Allow,
    /// Waves never start inside one, whatever the allow windows say.
    Deny,
}

impl WindowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Allow => "allow",
            WindowKind::Deny => "deny",
        }
    }
}

/// As written in `fleet.yaml`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// Five-field cron (minute hour day-of-month month day-of-week): when it opens.
    pub schedule: String,
    /// How long it stays open (`1h`, `30m`).
    pub duration: String,
    /// IANA time zone the schedule is read in; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// A window, checked. Kept in the persisted rollout state as written, so that a restart
/// holds the wave to the windows it began with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub kind: WindowKind,
    pub schedule: String,
    pub duration_ms: u64,
    pub time_zone: String,
}

impl Window {
    /// The schedule and zone, parsed; `None` only for a window that did not come through
    /// [`parse_windows`].
    pub fn compiled(&self) -> Option<(croner::Cron, jiff::tz::TimeZone)> {
        Some((
            cron(&self.schedule).ok()?,
            jiff::tz::TimeZone::get(&self.time_zone).ok()?,
        ))
    }

    /// `allow 0 22 * * * for 2h (Europe/Berlin)`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} for {} ({})",
            self.kind.as_str(),
            self.schedule,
            crate::rollout::human(self.duration_ms),
            self.time_zone
        )
    }
}

/// Five fields, as Argo CD and crontab write them: no seconds, no year.
fn cron(schedule: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(schedule)
}

/// Checks the windows at `at` (`spec.rollout.windows`, `spec.rollout.waves[i].windows`);
/// the valid ones.
pub fn parse_windows(
    specs: &[WindowSpec],
    origin: &Origin,
    at: &str,
    out: &mut Vec<Diagnostic>,
) -> Vec<Window> {
    let mut windows = Vec::new();
    for (j, w) in specs.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let before = out.len();
        if let Err(e) = cron(&w.schedule) {
            out.push(Diagnostic::field(
                origin,
                format!("{at}.schedule"),
                format!(
                    "{:?} is not a five-field cron expression (minute hour day-of-month month day-of-week): {e}",
                    w.schedule
                ),
            ));
        }
        let duration = match duration::parse(&w.duration) {
            Ok(d) if d > Duration::ZERO => d,
            Ok(_) => {
                out.push(Diagnostic::field(
                    origin,
                    format!("{at}.duration"),
                    "must be longer than 0: the window would never be open",
                ));
                Duration::ZERO
            }
            Err(e) => {
                out.push(Diagnostic::field(origin, format!("{at}.duration"), e));
                Duration::ZERO
            }
        };
        let time_zone = w.time_zone.clone().unwrap_or_else(|| "UTC".into());
        if jiff::tz::TimeZone::get(&time_zone).is_err() {
            out.push(Diagnostic::field(
                origin,
                format!("{at}.timeZone"),
                format!("{time_zone:?} is not an IANA time zone name (e.g. Europe/Berlin, UTC)"),
            ));
        }
        if out.len() == before {
            windows.push(Window {
                kind: w.kind,
                schedule: w.schedule.clone(),
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                time_zone,
            });
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: WindowKind, schedule: &str, duration: &str, tz: Option<&str>) -> WindowSpec {
        WindowSpec {
            kind,
            schedule: schedule.into(),
            duration: duration.into(),
            time_zone: tz.map(Into::into),
        }
    }

    #[test]
    fn bad_windows_are_errors_naming_the_field() {
        let origin = Origin {
            file: "fleet.yaml".into(),
            document: 1,
        };
        let mut out = Vec::new();
        let windows = parse_windows(
            &[
                spec(WindowKind::Allow, "0 22 * * *", "2h", Some("Europe/Berlin")),
                spec(WindowKind::Deny, "0 22 * *", "2h", None),
                spec(WindowKind::Deny, "0 0 22 * * *", "0s", Some("Mars/Olympus")),
            ],
            &origin,
            "spec.rollout.windows",
            &mut out,
        );
        assert_eq!(windows.len(), 1);
        assert_eq!(
            windows[0].describe(),
            "allow 0 22 * * * for 2h (Europe/Berlin)"
        );
        let fields: Vec<String> = out.iter().map(|d| d.field.clone().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "spec.rollout.windows[1].schedule",
                "spec.rollout.windows[2].schedule",
                "spec.rollout.windows[2].duration",
                "spec.rollout.windows[2].timeZone",
            ],
            "{out:?}"
        );
    }
}
