//! CEL validation rules (`x-kubernetes-validations`) of a structural schema, evaluated as
//! kube-apiserver evaluates them: `self` bound to the value at the rule's node, declared
//! property names escaped the way the API server escapes them (`namespace` is
//! `__namespace__`, `a-b` is `a__dash__b`), map keys left as they are. Rules that compare
//! with the old object (`oldSelf`) are transition rules, which a create never runs; the
//! simulator runs none of them.
//!
//! The language itself is the `cel` crate's (cel-rust): parsing, the `has()` macro and
//! the error-absorbing `||` and `&&` are the spec's, not re-implemented here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

/// Why a value failed one of its node's rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The rule evaluated to false: the rule's message (or `failed rule: <rule>`).
    False(String),
    /// The rule could not be evaluated on this value.
    Error(String),
}

/// Keywords CEL reserves, which the API server escapes as `__<keyword>__` in property
/// names.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A declared property's name as a CEL expression names it; `None` when it cannot be
/// named (the API server then leaves it out of `self`).
pub fn escape(name: &str) -> Option<String> {
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "_.-/".contains(c));
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c)) {
        return None;
    }
    Some(
        name.replace("__", "__underscores__")
            .replace('.', "__dot__")
            .replace('-', "__dash__")
            .replace('/', "__slash__"),
    )
}

/// `value` as CEL sees it under `schema`.
fn to_cel(schema: &Value, value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => {
            let item_schema = schema.get("items").unwrap_or(&Value::Null);
            cel::Value::List(Arc::new(
                items.iter().map(|i| to_cel(item_schema, i)).collect(),
            ))
        }
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut out: HashMap<String, cel::Value> = HashMap::with_capacity(map.len());
            for (k, v) in map {
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(s), _) => {
                        if let Some(name) = escape(k) {
                            out.insert(name, to_cel(s, v));
                        }
                    }
                    (None, Some(s)) => {
                        out.insert(k.clone(), to_cel(s, v));
                    }
                    (None, None) => {
                        out.insert(k.clone(), to_cel(&Value::Null, v));
                    }
                }
            }
            cel::Value::from(out)
        }
    }
}

/// Compiled rules, kept: a rule is parsed once per process, not once per write.
fn compiled(rule: &str) -> Result<Arc<cel::Program>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<cel::Program>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(rule) {
        return Ok(p.clone());
    }
    let program = Arc::new(cel::Program::compile(rule).map_err(|e| e.to_string())?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(rule.to_string(), program.clone());
    Ok(program)
}

thread_local! {
    /// The standard library's functions, built once per thread: building them for each
    /// rule was about a tenth of the simulator's CPU in a cold start. A rule runs in a
    /// scope of its own under it, so one rule's `self` is never another's.
    static STDLIB: cel::Context<'static, 'static> = cel::Context::default();
}

/// The failures of `value` against the rules of its schema node `schema` (none when it
/// has no rules), in the order the rules are listed.
pub fn check(schema: &Value, value: &Value) -> Vec<Failure> {
    let Some(rules) = schema["x-kubernetes-validations"].as_array() else {
        return Vec::new();
    };
    let this = to_cel(schema, value);
    let mut failures = Vec::new();
    for r in rules {
        let Some(rule) = r["rule"].as_str() else {
            continue;
        };
        if rule.contains("oldSelf") {
            continue;
        }
        let program = match compiled(rule) {
            Ok(p) => p,
            Err(e) => {
                // The API server refuses such a CRD; here it is a bug in the types.
                tracing::warn!(rule, error = %e, "a CEL rule does not compile");
                continue;
            }
        };
        let result = STDLIB.with(|stdlib| {
            let mut context = stdlib.new_inner_scope();
            context.add_variable_from_value("self", this.clone());
            program.execute(&context)
        });
        match result {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => failures.push(Failure::False(
                r["message"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("failed rule: {rule}")),
            )),
            Ok(other) => failures.push(Failure::Error(format!(
                "rule evaluation error: rule did not evaluate to a bool: {other:?}"
            ))),
            Err(e) => failures.push(Failure::Error(format!("rule evaluation error: {e}"))),
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn usage_spec() -> Value {
        json!({"type": "object", "properties": {
            "by": {"type": "object"}, "reason": {"type": "string"},
            "of": {"type": "object", "properties": {
                "resourceRef": {"type": "object", "properties": {
                    "name": {"type": "string"}, "namespace": {"type": "string"}
                }}
            }}
        }, "x-kubernetes-validations": [
            {"rule": "has(self.by) || has(self.reason)", "message": "either \"spec.by\" or \"spec.reason\" must be specified."},
            {"rule": "has(self.by) || !has(self.of.resourceRef) || !has(self.of.resourceRef.__namespace__)"}
        ]})
    }

    #[test]
    fn a_rule_that_holds_passes_and_one_that_fails_gives_its_message() {
        let schema = usage_spec();
        assert!(check(&schema, &json!({"reason": "x", "of": {}})).is_empty());
        assert!(check(&schema, &json!({"by": {}, "of": {}})).is_empty());
        assert_eq!(
            check(&schema, &json!({"of": {}})),
            vec![Failure::False(
                "either \"spec.by\" or \"spec.reason\" must be specified.".into()
            )]
        );
    }

    #[test]
    fn reserved_property_names_are_escaped_and_a_rule_without_message_names_itself() {
        let schema = usage_spec();
        let failures = check(
            &schema,
            &json!({"reason": "x", "of": {"resourceRef": {"name": "a", "namespace": "b"}}}),
        );
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            matches!(&failures[0], Failure::False(m) if m.starts_with("failed rule: has(self.by)")),
            "{failures:?}"
        );
    }

    #[test]
    fn names_are_escaped_as_the_api_server_escapes_them() {
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(
            escape("a-b.c/d").as_deref(),
            Some("a__dash__b__dot__c__slash__d")
        );
        assert_eq!(escape("x__y").as_deref(), Some("x__underscores__y"));
        assert_eq!(escape("plain").as_deref(), Some("plain"));
        assert_eq!(escape("1abc"), None);
    }
}
