//! The admin UI's forms: the fields of each record kind, read from a posted form into the JSON
//! body the REST API takes, and filled from a record the API returned; the tool tester's fields
//! from a tool's input schema. `application/x-www-form-urlencoded` is parsed here too.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::ports::Kind;

/// How a field is edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// One line of text.
    Text,
    /// Free text over several lines.
    Area,
    /// A whole number.
    Number,
    /// One of a few words.
    Select(&'static [&'static str]),
    /// JSON text.
    Json,
    /// A list of strings, one per line.
    Lines,
    /// A flag.
    Check,
}

impl Input {
    fn word(self) -> &'static str {
        match self {
            Input::Text => "text",
            Input::Area => "area",
            Input::Number => "number",
            Input::Select(_) => "select",
            Input::Json => "json",
            Input::Lines => "lines",
            Input::Check => "check",
        }
    }
}

/// One field of a record's form.
pub(crate) struct Spec {
    pub name: &'static str,
    pub label: &'static str,
    pub input: Input,
    pub help: &'static str,
}

const fn f(name: &'static str, label: &'static str, input: Input, help: &'static str) -> Spec {
    Spec {
        name,
        label,
        input,
        help,
    }
}

const SCOPE: Spec = f(
    "scope",
    "Scope",
    Input::Text,
    "The scope a caller needs to see and use it.",
);

const TOOL: &[Spec] = &[
    f("name", "Name", Input::Text, ""),
    f("title", "Title", Input::Text, ""),
    f("description", "Description", Input::Area, ""),
    f(
        "url",
        "URL",
        Input::Text,
        "The REST endpoint; {{ arguments }} may appear in it.",
    ),
    f(
        "method",
        "Method",
        Input::Select(&["GET", "POST", "PUT", "PATCH", "DELETE"]),
        "",
    ),
    f(
        "input_schema",
        "Input schema",
        Input::Json,
        "JSON Schema of the arguments.",
    ),
    f("output_schema", "Output schema", Input::Json, ""),
    f(
        "headers",
        "Headers",
        Input::Json,
        "A JSON object; values are stored sealed and shown masked.",
    ),
    f("annotations", "Annotations", Input::Json, ""),
    f("timeout_ms", "Timeout (ms)", Input::Number, ""),
    SCOPE,
];

const RESOURCE: &[Spec] = &[
    f("name", "Name", Input::Text, ""),
    f("title", "Title", Input::Text, ""),
    f("description", "Description", Input::Area, ""),
    f("uri", "URI", Input::Text, "A static resource's URI."),
    f("uri_template", "URI template", Input::Text, "Or an RFC 6570 template."),
    f("mime_type", "MIME type", Input::Text, ""),
    f(
        "text",
        "Text",
        Input::Area,
        "For a template, minijinja over its variables.",
    ),
    SCOPE,
];

const PROMPT: &[Spec] = &[
    f("name", "Name", Input::Text, ""),
    f("title", "Title", Input::Text, ""),
    f("description", "Description", Input::Area, ""),
    f("template", "Template", Input::Area, "minijinja over the arguments."),
    f(
        "arguments",
        "Arguments",
        Input::Json,
        "[{\"name\": \"who\", \"required\": true}]",
    ),
    f("messages", "Messages", Input::Json, ""),
    SCOPE,
];

const SERVER: &[Spec] = &[
    f("name", "Name", Input::Text, ""),
    f("title", "Title", Input::Text, ""),
    f("description", "Description", Input::Area, ""),
    f("tools", "Tools", Input::Lines, "One name per line."),
    f("resources", "Resources", Input::Lines, ""),
    f("prompts", "Prompts", Input::Lines, ""),
    f("upstreams", "Upstreams", Input::Lines, "Whole upstreams."),
    f(
        "original_names",
        "Original names",
        Input::Check,
        "Members keep their upstream names.",
    ),
    SCOPE,
];

const UPSTREAM: &[Spec] = &[
    f("name", "Name", Input::Text, ""),
    f("description", "Description", Input::Area, ""),
    f("url", "URL", Input::Text, ""),
    f(
        "urls",
        "More URLs",
        Input::Lines,
        "Tried in order when the ones before fail.",
    ),
    f(
        "transport",
        "Transport",
        Input::Select(&["streamable-http", "sse", "stdio", "openapi"]),
        "openapi: the URL is the OpenAPI document's.",
    ),
    f(
        "kind",
        "Kind",
        Input::Select(&["mcp", "peer"]),
        "peer: another mcpgw (origins tracked).",
    ),
    f(
        "conflicts",
        "Name conflicts",
        Input::Select(&["", "namespace", "prefer-local", "refuse"]),
        "peer only: how its members are named.",
    ),
    f(
        "base_url",
        "API base URL",
        Input::Text,
        "openapi only: instead of the document's server.",
    ),
    f("command", "Command", Input::Text, "stdio only (native gateway)."),
    f("args", "Arguments", Input::Lines, ""),
    f(
        "headers",
        "Headers",
        Input::Json,
        "A JSON object; values are stored sealed and shown masked.",
    ),
    f(
        "tls",
        "TLS",
        Input::Json,
        "{\"ca\": PEM, \"client_cert\": PEM, \"client_key\": PEM} (native).",
    ),
    f("slug", "Slug", Input::Text, "The prefix of its members' names."),
    f("timeout_ms", "Timeout (ms)", Input::Number, ""),
    f("refresh_secs", "Refresh every (s)", Input::Number, ""),
    SCOPE,
];

/// A record kind as the UI shows it.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct KindPage {
    pub slug: &'static str,
    pub title: &'static str,
    pub one: &'static str,
    #[serde(skip)]
    pub kind: Kind,
}

/// The kinds the UI edits, in menu order.
pub(crate) const KINDS: [KindPage; 5] = [
    KindPage {
        slug: "tools",
        title: "Tools",
        one: "tool",
        kind: Kind::Tool,
    },
    KindPage {
        slug: "resources",
        title: "Resources",
        one: "resource",
        kind: Kind::Resource,
    },
    KindPage {
        slug: "prompts",
        title: "Prompts",
        one: "prompt",
        kind: Kind::Prompt,
    },
    KindPage {
        slug: "servers",
        title: "Virtual servers",
        one: "virtual server",
        kind: Kind::Server,
    },
    KindPage {
        slug: "gateways",
        title: "Upstreams",
        one: "upstream",
        kind: Kind::Upstream,
    },
];

/// The kind a path segment names.
pub(crate) fn kind_page(slug: &str) -> Option<KindPage> {
    KINDS.into_iter().find(|k| k.slug == slug)
}

/// The fields of a kind's form.
pub(crate) fn specs(kind: Kind) -> &'static [Spec] {
    match kind {
        Kind::Tool => TOOL,
        Kind::Resource => RESOURCE,
        Kind::Prompt => PROMPT,
        Kind::Server => SERVER,
        Kind::Upstream | Kind::Revocation | Kind::Connection | Kind::Consent | Kind::Client => UPSTREAM,
    }
}

/// One field as a template shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Shown {
    pub name: String,
    pub label: String,
    pub input: &'static str,
    pub options: Vec<String>,
    pub help: String,
    pub value: Value,
    pub error: Option<String>,
    pub required: bool,
}

impl Shown {
    fn of(spec: &Spec, value: Value) -> Self {
        Shown {
            name: spec.name.into(),
            label: spec.label.into(),
            input: spec.input.word(),
            options: match spec.input {
                Input::Select(o) => o.iter().map(|w| w.to_string()).collect(),
                _ => vec![],
            },
            help: spec.help.into(),
            value,
            error: None,
            required: false,
        }
    }
}

/// The decoded pairs of a form body or a query string.
pub(crate) fn parse_form(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The first value of `name` in decoded pairs.
pub(crate) fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The form of a record as the API returned it (`record` null: a new one, with defaults).
pub(crate) fn fill(kind: Kind, record: &Value) -> Vec<Shown> {
    specs(kind)
        .iter()
        .map(|s| {
            let v = &record[s.name];
            let shown = match s.input {
                Input::Check => json!(v.as_bool().unwrap_or(false)),
                Input::Json if !v.is_null() => json!(serde_json::to_string_pretty(v).unwrap_or_default()),
                Input::Lines => json!(v
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()),
                Input::Select(o) if v.is_null() => json!(o[0]),
                _ => match v {
                    Value::Null => json!(""),
                    Value::String(_) => v.clone(),
                    other => json!(other.to_string()),
                },
            };
            Shown::of(s, shown)
        })
        .collect()
}

/// The form as posted, with the JSON body it makes for the API (none while a field is wrong:
/// then the error is beside it).
pub(crate) fn read(kind: Kind, pairs: &[(String, String)]) -> (Option<Value>, Vec<Shown>) {
    let mut body = Map::new();
    let mut shown = Vec::new();
    let mut failed = false;
    for s in specs(kind) {
        let raw = value(pairs, s.name).unwrap_or_default();
        let text = raw.trim();
        let mut field = Shown::of(s, json!(raw));
        let parsed: Result<Option<Value>, String> = match s.input {
            Input::Check => {
                field.value = json!(!raw.is_empty());
                Ok((!raw.is_empty()).then_some(json!(true)))
            }
            _ if text.is_empty() => Ok(None),
            Input::Text | Input::Select(_) => Ok(Some(json!(text))),
            Input::Area => Ok(Some(json!(raw.replace("\r\n", "\n")))),
            Input::Number => text
                .parse::<u64>()
                .map(|n| Some(json!(n)))
                .map_err(|_| "must be a whole number".to_string()),
            Input::Json => serde_json::from_str::<Value>(text)
                .map(Some)
                .map_err(|e| format!("not valid JSON: {e}")),
            Input::Lines => Ok(Some(json!(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()))),
        };
        match parsed {
            Ok(Some(v)) => {
                body.insert(s.name.into(), v);
            }
            Ok(None) => {}
            Err(e) => {
                field.error = Some(e);
                failed = true;
            }
        }
        shown.push(field);
    }
    ((!failed).then_some(Value::Object(body)), shown)
}

/// Puts an API error beside its field (`tls.ca` goes beside `tls`); false if no field of the
/// form is named.
pub(crate) fn place_error(shown: &mut [Shown], field: &str, message: &str) -> bool {
    let top = field.split(['.', '[']).next().unwrap_or_default();
    match shown.iter_mut().find(|s| s.name == top) {
        Some(s) => {
            s.error = Some(if field == top {
                message.to_string()
            } else {
                format!("{field}: {message}")
            });
            true
        }
        None => false,
    }
}

/// The tool tester's fields: one per property of the input schema.
pub(crate) fn argument_fields(schema: &Value, posted: &[(String, String)]) -> Vec<Shown> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema["properties"].as_object() else {
        return vec![];
    };
    props
        .iter()
        .map(|(name, p)| {
            let options: Vec<String> = p["enum"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default();
            let input = match p["type"].as_str() {
                _ if !options.is_empty() => "select",
                Some("integer") | Some("number") => "number",
                Some("boolean") => "check",
                Some("string") => "text",
                _ => "json",
            };
            let posted = value(posted, &format!("arg.{name}"));
            let value = match (input, posted, p.get("default")) {
                ("check", p, _) => json!(p.is_some()),
                (_, Some(v), _) => json!(v),
                (_, None, Some(Value::String(d))) => json!(d),
                (_, None, Some(d)) => json!(d.to_string()),
                (_, None, None) => json!(""),
            };
            Shown {
                name: name.clone(),
                label: name.clone(),
                input,
                options,
                help: p["description"].as_str().unwrap_or_default().to_string(),
                value,
                error: None,
                required: required.contains(&name.as_str()),
            }
        })
        .collect()
}

/// The arguments of a posted tester form, typed by the schema; the fields again with errors.
pub(crate) fn arguments(schema: &Value, posted: &[(String, String)]) -> Result<Value, Vec<Shown>> {
    let mut fields = argument_fields(schema, posted);
    let mut args = Map::new();
    let mut failed = false;
    for f in fields.iter_mut() {
        let ty = schema["properties"][&f.name]["type"].as_str().unwrap_or_default();
        let raw = value(posted, &format!("arg.{}", f.name)).unwrap_or_default().trim();
        let v: Result<Option<Value>, String> = match f.input {
            "check" => Ok(Some(json!(!raw.is_empty()))),
            _ if raw.is_empty() => Ok(None),
            "number" if ty == "integer" => raw
                .parse::<i64>()
                .map(|n| Some(json!(n)))
                .map_err(|_| "must be an integer".into()),
            "number" => raw
                .parse::<f64>()
                .map(|n| Some(json!(n)))
                .map_err(|_| "must be a number".into()),
            "json" => serde_json::from_str(raw)
                .map(Some)
                .map_err(|e| format!("not valid JSON: {e}")),
            _ => Ok(Some(json!(raw))),
        };
        match v {
            Ok(Some(v)) => {
                args.insert(f.name.clone(), v);
            }
            Ok(None) if f.required => {
                f.error = Some("is required".into());
                failed = true;
            }
            Ok(None) => {}
            Err(e) => {
                f.error = Some(e);
                failed = true;
            }
        }
    }
    if failed {
        Err(fields)
    } else {
        Ok(Value::Object(args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_becomes_the_api_body_and_bad_fields_are_named() {
        let pairs = parse_form("name=w&url=http%3A%2F%2Fh%2Fx&method=GET&input_schema=&timeout_ms=12&title=a+b");
        let body = read(Kind::Tool, &pairs).0.expect("valid");
        assert_eq!(
            body,
            json!({"name": "w", "url": "http://h/x", "method": "GET", "timeout_ms": 12, "title": "a b"})
        );
        let pairs = parse_form("name=w&input_schema=%7Bnope&timeout_ms=soon");
        let (body, shown) = read(Kind::Tool, &pairs);
        assert!(body.is_none());
        let err = |n: &str| shown.iter().find(|s| s.name == n).and_then(|s| s.error.clone());
        assert!(err("input_schema").is_some_and(|e| e.contains("JSON")));
        assert_eq!(err("timeout_ms").as_deref(), Some("must be a whole number"));
        assert_eq!(err("name"), None);
        let mut shown = fill(
            Kind::Upstream,
            &json!({"name": "u", "tls": {"ca": "x"}, "urls": ["a", "b"]}),
        );
        assert_eq!(
            shown.iter().find(|s| s.name == "urls").map(|s| s.value.clone()),
            Some(json!("a\nb"))
        );
        assert!(place_error(&mut shown, "tls.ca", "must be PEM"));
        assert!(!place_error(&mut shown, "", "whole"));
    }

    #[test]
    fn tester_arguments_follow_the_schema() {
        let schema = json!({"type": "object", "required": ["n"], "properties": {
            "n": {"type": "integer"}, "s": {"type": "string"}, "b": {"type": "boolean"}, "o": {"type": "object"}}});
        let args = arguments(
            &schema,
            &parse_form("arg.n=3&arg.s=hi&arg.b=on&arg.o=%7B%22k%22%3A1%7D"),
        )
        .expect("ok");
        assert_eq!(args, json!({"n": 3, "s": "hi", "b": true, "o": {"k": 1}}));
        let fields = arguments(&schema, &parse_form("arg.s=x")).expect_err("n is required");
        assert!(fields.iter().any(|f| f.name == "n" && f.error.is_some()));
    }
}
