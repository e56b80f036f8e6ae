//! An error as the agent reports it (log, status `last_error`, Event): its whole chain of
//! causes. The outermost error alone rarely says what to fix ("initial list failed"); the
//! innermost usually does ("invalid peer certificate: UnknownIssuer"). The text is bounded,
//! on one line, and scrubbed of what looks like a credential, since a cause may quote what
//! a library was handed (an exec plugin's output, a proxy echoing the request).
//!
//! Where an API server answered, the chain ends with its code, reason and message
//! ([`answer`]): below a Status there is nothing more the server said.

use std::error::Error;
use std::sync::LazyLock;

use kube::core::Status;
use regex::Regex;

/// An API server's message is its own words about the object, but one that quotes a whole
/// manifest would drown the rest of the line.
const MAX_MESSAGE_CHARS: usize = 300;

/// A chain longer than this says nothing more that a person reads.
const MAX_CHAIN_CHARS: usize = 2000;

/// kube-rs's reason for an error body that is not a Kubernetes Status.
pub const NOT_A_STATUS: &str = "Failed to parse error data";

/// `error` and its causes, `: `-separated. A cause whose text is already said is skipped:
/// libraries repeat their cause in their own message (kube's `ServiceError: {0}`).
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = String::new();
    let mut link = Some(error);
    while let Some(e) = link {
        if let Some(answered) = api_status(e) {
            say(&mut text, &answer(answered));
            break;
        }
        say(&mut text, &e.to_string());
        link = e.source();
    }
    finish(&text)
}

/// `what` (the agent's own words) followed by the chain of `error`.
pub fn with_cause(what: &str, error: &(dyn Error + 'static)) -> String {
    let cause = chain(error);
    if cause.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {cause}")
    }
}

fn say(text: &mut String, link: &str) {
    let link = link.trim();
    if link.is_empty() || text.contains(link) {
        return;
    }
    if !text.is_empty() {
        text.push_str(": ");
    }
    text.push_str(link);
}

/// Redacted, escaped onto one line, and bounded.
fn finish(text: &str) -> String {
    let redacted = redact(text);
    escape_cut(&redacted, MAX_CHAIN_CHARS)
}

/// The Status in `e`, when `e` is an API server's answer.
fn api_status<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a Status> {
    match e.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) => Some(status.as_ref()),
        Some(_) => None,
        // A watch's error event is a boxed Status, and a source is handed on as it is held.
        None => e
            .downcast_ref::<Status>()
            .or_else(|| e.downcast_ref::<Box<Status>>().map(|s| &**s)),
    }
}

/// What an API server answered: `API server answered 404 NotFound: namespaces "x" not found`.
pub fn answer(status: &Status) -> String {
    let message = server_message(status);
    let head = format!(
        "API server answered {}",
        code_and_reason(status.code, &status.reason)
    );
    if message.is_empty() {
        head
    } else {
        format!("{head}: {message}")
    }
}

/// `404 NotFound`, or only the code when the server gave no reason (an unknown error, as
/// kube-apiserver's 500 for a field its schema does not declare).
pub fn code_and_reason(code: u16, reason: &str) -> String {
    if reason.is_empty() {
        code.to_string()
    } else {
        format!("{code} {reason}")
    }
}

/// What of an error answer may be quoted. A Status message is written by the API server
/// about the object (no credentials in it), but an error body that is not a Status comes
/// from whatever answered (a proxy page may echo the request and its Authorization
/// header), so only a Status is quoted, escaped onto one line and bounded, and never one
/// that mentions credentials.
pub fn server_message(status: &Status) -> String {
    if status.reason == NOT_A_STATUS {
        return String::new();
    }
    let lower = status.message.to_lowercase();
    if ["bearer", "authorization", "token", "client-key", "password"]
        .iter()
        .any(|word| lower.contains(word))
    {
        return "(message withheld: it mentions credentials)".to_string();
    }
    escape_cut(&status.message, MAX_MESSAGE_CHARS)
}

/// `text` with its control characters escaped ([`fleet_core::text::escape`]), at most
/// `max` characters of it, with `…` where it was cut: never in the middle of an escape
/// (`\u{1b}`), which would read as other characters.
fn escape_cut(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for c in text.chars() {
        let piece: String = if fleet_core::text::is_unsafe(c) {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        count += piece.chars().count();
        if count > max {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Patterns of credentials and what replaces them, applied in order.
static SECRETS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // Key material, whole blocks (a block cut short by a bound too).
        (
            r"(?s)-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|$)",
            "<redacted PEM>",
        ),
        // A token in an Authorization header value.
        (
            r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+",
            "$1 <redacted>",
        ),
        // `token: x`, `"password":"x"`, `client-key-data=x`, as YAML, JSON or Debug say it.
        (
            r#"(?i)\b((?:access[_-]?|id[_-]?|refresh[_-]?)?token|authorization|password|passwd|secret|client[_-]key(?:[_-]data)?)("?\s*[:=]\s*(?:Some\()?"?)[^\s",)}\]]+"#,
            "$1$2<redacted>",
        ),
        // User information in a URL (`https://user:token@host`).
        (r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@", "$1<redacted>@"),
        // A JSON Web Token, such as a service account token, wherever it stands.
        (
            r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
            "<redacted>",
        ),
        // Bytes as Debug shows them (an exec plugin's output): they may spell a token.
        (r"\[\d{1,3}(?:, \d{1,3}){15,}\]", "[<redacted bytes>]"),
    ]
    .into_iter()
    .filter_map(|(pattern, with)| Regex::new(pattern).ok().map(|r| (r, with)))
    .collect()
});

/// `text` with what looks like a credential replaced by `<redacted>`.
pub fn redact(text: &str) -> String {
    SECRETS
        .iter()
        .fold(text.to_string(), |text, (pattern, with)| {
            pattern.replace_all(&text, *with).into_owned()
        })
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("initial list failed")]
    struct Outer(#[source] Middle);

    /// Repeats its cause in its own message, as kube's errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("ServiceError: {0}")]
    struct Middle(#[source] io::Error);

    #[test]
    fn the_chain_says_every_cause_once_outermost_first() {
        let e = Outer(Middle(io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        )));
        assert_eq!(
            chain(&e),
            "initial list failed: ServiceError: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(
            with_cause("cluster c1: watch failed", &e.0),
            "cluster c1: watch failed: ServiceError: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(chain(&io::Error::other("alone")), "alone");
    }

    #[test]
    fn an_api_answer_ends_the_chain_with_code_reason_and_message() {
        let status = Status::failure(r#"namespaces "payments" not found"#, "NotFound")
            .with_code(404)
            .boxed();
        assert_eq!(
            chain(&kube::Error::Api(status)),
            r#"API server answered 404 NotFound: namespaces "payments" not found"#
        );
        let bare = Status::failure("", "Forbidden").with_code(403).boxed();
        assert_eq!(
            chain(&kube::Error::Api(bare)),
            "API server answered 403 Forbidden"
        );
    }

    #[test]
    fn a_server_message_is_escaped_and_bounded() {
        let status = Status::failure(&"x\n\u{1b}[2J".repeat(400), "Invalid").with_code(422);
        let said = chain(&kube::Error::Api(status.boxed()));
        assert!(!said.chars().any(fleet_core::text::is_unsafe), "{said}");
        assert!(said.contains(r"x\n\u{1b}[2J"), "{said}");
        assert!(said.chars().count() < 400 && said.ends_with('…'), "{said}");
    }

    #[test]
    fn credentials_in_any_cause_are_redacted() {
        let cases = [
            "Authorization: Bearer s3cret-value",
            "header authorization=s3cret-value",
            "token: s3cret-value",
            r#"{"token":"s3cret-value"}"#,
            r#"ExecCredential { token: Some("s3cret-value") }"#,
            "password=s3cret-value",
            "client-key-data: s3cret-value",
            "fetch https://x-access-token:s3cret-value@git.example/fleet.git failed",
            "-----BEGIN RSA PRIVATE KEY-----\ns3cret-value\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\ns3cret-value (cut short",
        ];
        for case in cases {
            let said = chain(&Outer(Middle(io::Error::other(case))));
            assert!(!said.contains("s3cret"), "{case:?} became {said:?}");
            assert!(said.contains("redacted"), "{case:?} became {said:?}");
        }
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl";
        assert!(!chain(&io::Error::other(format!("saw {jwt}"))).contains(jwt));
        let bytes = format!("stdout: {:?}", b"s3cret-value-of-a-token".to_vec());
        assert!(!chain(&io::Error::other(bytes)).contains("115, 51"));
        // Words alone are not credentials: the agent's own advice stays readable.
        let advice = "the remote refused the credentials (the token from --git-token-file)";
        assert_eq!(chain(&io::Error::other(advice)), advice);
    }

    #[test]
    fn a_long_chain_is_cut_without_splitting_an_escape() {
        let said = chain(&io::Error::other("\u{1b}".repeat(2000)));
        assert!(said.ends_with("}…"), "{}", &said[said.len() - 20..]);
        assert!(said.chars().count() <= MAX_CHAIN_CHARS + 1);
    }
}
