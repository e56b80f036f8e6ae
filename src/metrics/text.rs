//! The Prometheus text format (0.0.4), written straight from the numbers the agent holds.
//! The prometheus crate builds a protobuf message for every series at every scrape (label
//! pairs as owned strings, a descriptor per child, then a sort): at ten thousand clusters,
//! 430,000 series, that was 0.7 s of CPU a scrape and the same again in allocations, most
//! of it while holding the lock every cluster worker reports through.
//!
//! Lines read exactly as the crate's `TextEncoder` writes them (labels in the order of
//! their names, values as `f64` prints), so that nothing reading them sees a difference.

use std::fmt::Write;

/// What one scrape answers, family by family.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

/// A family's name, help and type (`counter`, `gauge`, `histogram`).
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: &'static str,
}

impl Exposition {
    pub fn with_capacity(bytes: usize) -> Exposition {
        Exposition {
            out: String::with_capacity(bytes),
        }
    }

    /// Starts a family: every sample of it follows, before the next family.
    pub fn family(&mut self, family: Family) {
        let Family { name, help, kind } = family;
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape(&mut self.out, help, false);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    /// One sample of `name` (with `suffix`: `_bucket`, `_sum`, `_count`, or none);
    /// `labels` in the order of their names.
    pub fn sample(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        for (i, (label, text)) in labels.iter().enumerate() {
            self.out.push(if i == 0 { '{' } else { ',' });
            self.out.push_str(label);
            self.out.push_str("=\"");
            escape(&mut self.out, text, true);
            self.out.push('"');
        }
        if !labels.is_empty() {
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The samples of `family`, its header written before the first of them: a family
    /// without samples is left out, as the prometheus registry leaves it out.
    pub fn samples(&mut self, family: Family) -> Samples<'_> {
        Samples {
            out: self,
            family,
            started: false,
        }
    }

    /// Appends text written elsewhere in the same format.
    pub fn push_str(&mut self, text: &str) {
        self.out.push_str(text);
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

/// See [`Exposition::samples`].
pub struct Samples<'a> {
    out: &'a mut Exposition,
    family: Family,
    started: bool,
}

impl Samples<'_> {
    pub fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        if !self.started {
            self.out.family(self.family);
            self.started = true;
        }
        self.out.sample(self.family.name, suffix, labels, value);
    }
}

/// 1 or 0.
pub fn flag(set: bool) -> f64 {
    if set {
        1.0
    } else {
        0.0
    }
}

/// The format's escapes: backslash and line feed everywhere, the double quote in label
/// values.
fn escape(out: &mut String, text: &str, in_label: bool) {
    if !text
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (in_label && b == b'"'))
    {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if in_label => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// What the prometheus crate's own encoder writes of `registry`: what ours is held to.
#[cfg(test)]
pub fn theirs(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[cfg(test)]
mod tests {
    use prometheus::{Gauge, IntCounterVec, Opts, Registry};

    use super::*;

    /// Escapes, label order and value printing, against the crate's own encoder.
    #[test]
    fn samples_read_as_the_prometheus_crate_writes_them() {
        let help = "Counts \\ things,\nsays \"so\"";
        let family = Family {
            name: "psql_fleet_test_total",
            help,
            kind: "counter",
        };
        let odd = "a \"quoted\" \\ back\nslash, ünï";
        let counter = IntCounterVec::new(Opts::new(family.name, help), &["b", "a"]).unwrap();
        counter.with_label_values(&[odd, "x"]).inc_by(7);
        counter.with_label_values(&["plain", "y"]).inc_by(0);
        let gauge = Gauge::new("psql_fleet_test_seconds", "A time").unwrap();
        gauge.set(1733420000.125);
        let r = Registry::new();
        r.register(Box::new(counter)).unwrap();
        r.register(Box::new(gauge)).unwrap();

        // The registry writes its families in the order of their names.
        let mut ours = Exposition::default();
        ours.family(Family {
            name: "psql_fleet_test_seconds",
            help: "A time",
            kind: "gauge",
        });
        ours.sample("psql_fleet_test_seconds", "", &[], 1733420000.125);
        ours.family(family);
        ours.sample(family.name, "", &[("a", "x"), ("b", odd)], 7.0);
        ours.sample(family.name, "", &[("a", "y"), ("b", "plain")], 0.0);
        let ours = ours.into_string();
        assert!(
            ours.contains(r#"b="a \"quoted\" \\ back\nslash, ünï"} 7"#),
            "{ours}"
        );
        assert_eq!(ours, theirs(&r));
    }

    /// Values print as `f64` prints them, as the crate prints them.
    #[test]
    fn values_print_as_f64_prints_them() {
        for value in [
            0.0,
            -0.0,
            1.0,
            -3.0,
            0.25,
            1733420000.125,
            1e15,
            9.5e15,
            2f64.powi(60),
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            let mut ours = Exposition::default();
            ours.sample("x", "", &[], value);
            assert_eq!(ours.into_string(), format!("x {value}\n"), "{value:?}");
        }
    }
}
