//! How fields are written in the text log: as tracing-subscriber's default does
//! (`name=value`, the message bare), except that every control character in a value or a
//! message is escaped ([`fleet_core::text::escape`]). The default escapes ANSI sequences
//! but not a newline, so a value holding one (a cluster's error message, a file name from
//! a commit) could start a line of its own that reads like the agent's. One event, one
//! line. The JSON log needs none of this: JSON strings escape their control characters.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// The text log's field formatter.
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl Visitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = if name == "message" {
            write!(self.writer, "{separator}")
                .and_then(|()| write!(Escaping(&mut self.writer), "{value}"))
        } else {
            write!(self.writer, "{separator}{name}=")
                .and_then(|()| write!(Escaping(&mut self.writer), "{value}"))
        };
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // As the default: a message bare, other strings quoted.
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut cause = value.source();
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        self.write(field, format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

/// Writes through to `W`, escaping what [`fleet_core::text::is_unsafe`] refuses.
struct Escaping<'a, W>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(&fleet_core::text::escape(s))
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer\nforged")]
    struct Outer(#[source] io::Error);

    #[test]
    fn every_event_stays_on_one_line_whatever_its_fields_and_message_hold() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let evil = "x\u{1b}[2J\n2026-01-01T00:00:00Z  INFO forged";
            let span = tracing::info_span!("reconcile", cluster = %"c\n1");
            let _entered = span.enter();
            tracing::warn!(reason = %evil, quoted = evil, debug = ?evil, "display");
            tracing::warn!("spliced {evil}");
            let error = Outer(io::Error::other("inner\r\nforged"));
            tracing::error!(
                error = &error as &(dyn std::error::Error + 'static),
                "error"
            );
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.lines().count(), 3, "{log}");
        assert!(!log.contains('\u{1b}') && !log.contains('\r'), "{log}");
        assert!(
            log.lines()
                .all(|l| l.starts_with(" WARN") || l.starts_with("ERROR")),
            "{log}"
        );
        let first = log.lines().next().unwrap();
        assert!(first.contains(r#"reconcile{cluster=c\n1}"#), "{first}");
        assert!(
            first.contains(r"display reason=x\u{1b}[2J\n2026-01-01T00:00:00Z  INFO forged"),
            "{first}"
        );
        assert!(first.contains(r#"quoted="x\u{1b}[2J\n2026"#), "{first}");
        assert!(
            log.contains(r"error=outer\nforged: inner\r\nforged"),
            "{log}"
        );
    }
}
