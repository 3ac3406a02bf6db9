//! RFC 6570 URI templates: expansion (REST tool URLs) and matching (resource templates).
//!
//! Supports the operators `{var}`, `{+var}`, `{#var}`, `{.var}`, `{/var}`, `{;var}`, `{?var}` and
//! `{&var}` with comma-separated variable lists and the explode (`*`) and prefix (`:n`) modifiers.

use std::collections::BTreeMap;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

/// Characters left as they are by simple expansion: RFC 3986 unreserved.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// Characters left as they are by reserved (`+`, `#`) expansion: unreserved and reserved.
const RESERVED: &AsciiSet = &UNRESERVED
    .remove(b':')
    .remove(b'/')
    .remove(b'?')
    .remove(b'#')
    .remove(b'[')
    .remove(b']')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b'%');

#[derive(Debug, Clone, PartialEq)]
struct VarSpec {
    name: String,
    explode: bool,
    prefix: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Expr { op: Option<char>, vars: Vec<VarSpec> },
}

/// A parsed URI template.
#[derive(Debug, Clone, PartialEq)]
pub struct UriTemplate {
    parts: Vec<Part>,
}

/// What is malformed in a URI template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`.
    #[error("unclosed '{{' in URI template")]
    Unclosed,
    /// A `}` without its `{`.
    #[error("unmatched '}}' in URI template")]
    Unmatched,
    /// A prefix (`{var:N}`) that is not a number (the expression).
    #[error("bad prefix in '{{{0}}}'")]
    BadPrefix(String),
    /// A variable name with characters RFC 6570 does not allow (the expression).
    #[error("bad variable name in '{{{0}}}'")]
    BadName(String),
}

impl UriTemplate {
    /// Parses a template; the error says what is malformed.
    pub fn parse(src: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = src;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or(TemplateError::Unclosed)?;
                    let body = &rest[1..end];
                    let (op, list) = match body.chars().next() {
                        Some(c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&')) => (Some(c), &body[1..]),
                        _ => (None, body),
                    };
                    let mut vars = Vec::new();
                    for spec in list.split(',') {
                        let (spec, explode) = match spec.strip_suffix('*') {
                            Some(s) => (s, true),
                            None => (spec, false),
                        };
                        let (name, prefix) = match spec.split_once(':') {
                            Some((n, p)) => (
                                n,
                                Some(
                                    p.parse::<usize>()
                                        .map_err(|_| TemplateError::BadPrefix(body.to_string()))?,
                                ),
                            ),
                            None => (spec, None),
                        };
                        let ok = !name.is_empty()
                            && name
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '%');
                        if !ok {
                            return Err(TemplateError::BadName(body.to_string()));
                        }
                        vars.push(VarSpec {
                            name: name.to_string(),
                            explode,
                            prefix,
                        });
                    }
                    parts.push(Part::Expr { op, vars });
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    parts.push(Part::Literal(rest[..i].to_string()));
                    rest = &rest[i..];
                }
                None => {
                    if rest.contains('}') {
                        return Err(TemplateError::Unmatched);
                    }
                    parts.push(Part::Literal(rest.to_string()));
                    rest = "";
                }
            }
            if let Some(Part::Literal(l)) = parts.last() {
                if l.contains('}') {
                    return Err(TemplateError::Unmatched);
                }
            }
        }
        Ok(Self { parts })
    }

    /// The variable names, in order of appearance.
    pub fn variables(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Expr { vars, .. } => Some(vars.iter().map(|v| v.name.as_str())),
                Part::Literal(_) => None,
            })
            .flatten()
            .collect()
    }

    /// Expands the template with `vars`; undefined variables are skipped.
    pub fn expand(&self, vars: &Map<String, Value>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Expr { op, vars: specs } => expand_expr(&mut out, *op, specs, vars),
            }
        }
        out
    }

    /// Matches a concrete URI; returns the variable values (percent-decoded) on success.
    pub fn matches(&self, uri: &str) -> Option<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut rest = uri;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Part::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Part::Expr { op, vars } => {
                    let end = match self.parts.get(i + 1) {
                        Some(Part::Literal(next)) => rest.find(next.as_str())?,
                        _ => rest.len(),
                    };
                    let captured = &rest[..end];
                    rest = &rest[end..];
                    match_expr(*op, vars, captured, &mut out)?;
                }
            }
        }
        rest.is_empty().then_some(out)
    }
}

fn value_strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| value_strings(i).map(|s| s.join(",")))
                .collect(),
        ),
        other => Some(vec![other.to_string()]),
    }
}

/// Whether the path of `url` holds a dot-segment (`.` or `..`, however percent-encoded: servers
/// and URL parsers decode `%2E%2E` and `..%2F` alike): a value filling a template must not climb
/// the URL's path on the host (`/items/{id}` with `..` reaching `/`). Such a URL is refused.
pub fn has_dot_segment(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => return false,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    decoded.split(['/', '\\']).any(|seg| seg == "." || seg == "..")
}

fn expand_expr(out: &mut String, op: Option<char>, specs: &[VarSpec], vars: &Map<String, Value>) {
    let (first, sep, named, allow) = match op {
        None => ("", ",", false, UNRESERVED),
        Some('+') => ("", ",", false, RESERVED),
        Some('#') => ("#", ",", false, RESERVED),
        Some('.') => (".", ".", false, UNRESERVED),
        Some('/') => ("/", "/", false, UNRESERVED),
        Some(';') => (";", ";", true, UNRESERVED),
        Some('?') => ("?", "&", true, UNRESERVED),
        _ => ("&", "&", true, UNRESERVED),
    };
    let mut pieces = Vec::new();
    for spec in specs {
        let Some(values) = vars.get(&spec.name).and_then(value_strings) else {
            continue;
        };
        let enc = |s: &str| {
            let s = match spec.prefix {
                Some(n) => s.chars().take(n).collect::<String>(),
                None => s.to_string(),
            };
            utf8_percent_encode(&s, allow).to_string()
        };
        if spec.explode {
            for v in &values {
                pieces.push(if named {
                    format!("{}={}", spec.name, enc(v))
                } else {
                    enc(v)
                });
            }
        } else {
            let joined = values.iter().map(|v| enc(v)).collect::<Vec<_>>().join(",");
            pieces.push(if named {
                format!("{}={joined}", spec.name)
            } else {
                joined
            });
        }
    }
    if !pieces.is_empty() {
        out.push_str(first);
        out.push_str(&pieces.join(sep));
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn match_expr(op: Option<char>, specs: &[VarSpec], captured: &str, out: &mut BTreeMap<String, String>) -> Option<()> {
    let (prefix, sep, named) = match op {
        None | Some('+') => ("", ',', false),
        Some('#') => ("#", ',', false),
        Some('.') => (".", '.', false),
        Some('/') => ("/", '/', false),
        Some(';') => (";", ';', true),
        Some('?') => ("?", '&', true),
        _ => ("&", '&', true),
    };
    if captured.is_empty() {
        // Operators with a prefix expand to nothing when undefined; a bare {var} must have a value.
        return if matches!(op, None | Some('+')) { None } else { Some(()) };
    }
    let body = captured.strip_prefix(prefix)?;
    // Simple expansion never produces '/', '?' or '#': a value containing one belongs elsewhere.
    if op.is_none() && body.contains(['/', '?', '#']) {
        return None;
    }
    if named {
        for pair in body.split(sep) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if specs.iter().any(|s| s.name == k) {
                out.insert(k.to_string(), decode(v));
            }
        }
        return Some(());
    }
    if specs.len() == 1 {
        if body.is_empty() {
            return None;
        }
        let v = if specs[0].explode {
            body.split(sep).map(decode).collect::<Vec<_>>().join(",")
        } else {
            decode(body)
        };
        out.insert(specs[0].name.clone(), v);
        return Some(());
    }
    let values: Vec<&str> = body.split(sep).collect();
    for (spec, v) in specs.iter().zip(values) {
        out.insert(spec.name.clone(), decode(v));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn dot_segments_are_found_however_they_are_written() {
        let t = |tpl: &str, v: Value| UriTemplate::parse(tpl).expect("template").expand(&vars(v));
        for (tpl, v) in [
            ("http://h/items/{id}", json!({"id": ".."})),
            ("http://h/items/{id}", json!({"id": "."})),
            ("http://h/items/{id}", json!({"id": "../admin"})),
            ("http://h{+p}", json!({"p": "/a/../../admin"})),
            ("http://h{/seg*}", json!({"seg": ["a", "..", "b"]})),
            ("http://h/items/{+id}", json!({"id": "a/./b"})),
        ] {
            let url = t(tpl, v.clone());
            assert!(has_dot_segment(&url), "{tpl} {v}: {url}");
        }
        assert!(!has_dot_segment(&t("http://h/v/{id}", json!({"id": "1.2"}))));
        assert!(!has_dot_segment("http://h/a..b/c.d?x=../y#.."));
        assert!(!has_dot_segment("http://h"));
    }

    #[test]
    fn expands_rfc_examples() {
        let v = vars(
            json!({"var": "value", "hello": "Hello World!", "path": "/foo/bar", "list": ["red", "green"], "x": 1024, "y": 768}),
        );
        let cases = [
            ("{var}", "value"),
            ("{hello}", "Hello%20World%21"),
            ("{+hello}", "Hello%20World!"),
            ("{+path}/here", "/foo/bar/here"),
            ("{#path}", "#/foo/bar"),
            ("X{.var}", "X.value"),
            ("{/var,x}/here", "/value/1024/here"),
            ("{;x,y}", ";x=1024;y=768"),
            ("{?x,y}", "?x=1024&y=768"),
            ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
            ("{var:3}", "val"),
            ("{list}", "red,green"),
            ("{/list*}", "/red/green"),
            ("{?undef}", ""),
        ];
        for (t, want) in cases {
            assert_eq!(UriTemplate::parse(t).unwrap().expand(&v), want, "template {t}");
        }
    }

    #[test]
    fn matches_and_extracts_variables() {
        let t = UriTemplate::parse("docs://pages/{page}").unwrap();
        assert_eq!(t.matches("docs://pages/intro").unwrap()["page"], "intro");
        assert_eq!(t.matches("docs://pages/a%20b").unwrap()["page"], "a b");
        assert!(t.matches("docs://pages/a/b").is_none());
        assert!(t.matches("docs://other/x").is_none());
        assert!(t.matches("docs://pages/").is_none());
        let t = UriTemplate::parse("test://template/{id}/data").unwrap();
        assert_eq!(t.matches("test://template/42/data").unwrap()["id"], "42");
        let t = UriTemplate::parse("file:///{+path}").unwrap();
        assert_eq!(t.matches("file:///a/b/c.txt").unwrap()["path"], "a/b/c.txt");
        let t = UriTemplate::parse("api://s{?q,n}").unwrap();
        let m = t.matches("api://s?q=rust&n=3").unwrap();
        assert_eq!((m["q"].as_str(), m["n"].as_str()), ("rust", "3"));
    }

    #[test]
    fn rejects_malformed_templates() {
        assert!(UriTemplate::parse("a{b").is_err());
        assert!(UriTemplate::parse("a}b").is_err());
        assert!(UriTemplate::parse("a{}").is_err());
        assert!(UriTemplate::parse("a{x:y}").is_err());
        assert_eq!(UriTemplate::parse("x{a}{/b}").unwrap().variables(), vec!["a", "b"]);
    }
}
