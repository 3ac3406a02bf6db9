//! minijinja rendering for prompts and resource templates. Templates are operator-written; values
//! are client-supplied and only ever substituted, never compiled.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    // Prompts are plain text, not HTML: no escaping. Missing optional arguments render empty.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(100_000));
    env
}

/// The most text one rendering may produce: a prompt or a resource, not a flood.
pub const MAX_OUTPUT: usize = 1 << 20;

/// A writer that refuses to grow past [`MAX_OUTPUT`].
#[derive(Default)]
struct Bounded {
    out: Vec<u8>,
    over: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a template's code (its `{{ … }}` and `{% … %}`, raw blocks, comments and string
/// literals left out) uses `*`.
fn multiplies(source: &str) -> bool {
    let mut rest = source;
    // Raw blocks are text.
    let mut code = String::new();
    while let Some(start) = rest.find("{% raw %}") {
        code.push_str(&rest[..start]);
        rest = rest[start..].split_once("{% endraw %}").map_or("", |(_, after)| after);
    }
    code.push_str(rest);
    let segments = code
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}").map(|(c, _)| c.to_string()))
        .chain(
            code.split("{%")
                .skip(1)
                .filter_map(|s| s.split_once("%}").map(|(c, _)| c.to_string())),
        );
    segments.into_iter().any(|seg| {
        let mut quote = None;
        let mut escaped = false;
        seg.chars().any(|c| match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                false
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                false
            }
            None => c == '*',
        })
    })
}

/// Checks that a template compiles, uses no multiplication (a string times a number builds up
/// to 100 MB at once, before any limit on the output can stop it), and does not render past
/// [`MAX_OUTPUT`] by itself (arguments missing: what it produces of its own).
pub fn check(source: &str) -> Result<(), RenderError> {
    env()
        .template_from_str(source)
        .map_err(|e| RenderError::Template(e.to_string()))?;
    if multiplies(source) {
        return Err(RenderError::Multiplies);
    }
    match render(source, serde_json::json!({})) {
        Err(e @ RenderError::TooLong) => Err(e),
        _ => Ok(()),
    }
}

/// Why a template does not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// It does not compile, or fails while rendering (the engine's words).
    #[error("{0}")]
    Template(String),
    /// It multiplies (see [`check`]).
    #[error("'*' is not allowed in a template's expressions (a string times a number can build a huge text)")]
    Multiplies,
    /// Its output is over [`MAX_OUTPUT`].
    #[error("the rendered output is over {MAX_OUTPUT} bytes")]
    TooLong,
}

/// Renders a template with a context (any serializable map); an error past [`MAX_OUTPUT`].
pub fn render<C: Serialize>(source: &str, ctx: C) -> Result<String, RenderError> {
    let env = env();
    let tpl = env
        .template_from_str(source)
        .map_err(|e| RenderError::Template(e.to_string()))?;
    let mut out = Bounded::default();
    let rendered = tpl.render_captured_to(ctx, &mut out).map(|_| ());
    match rendered {
        Ok(()) => String::from_utf8(out.out).map_err(|e| RenderError::Template(e.to_string())),
        Err(_) if out.over => Err(RenderError::TooLong),
        Err(e) => Err(RenderError::Template(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_and_reports_errors() {
        assert_eq!(
            render("Hello {{ name }}!", json!({"name": "Ada"})).unwrap(),
            "Hello Ada!"
        );
        assert_eq!(render("<{{ x }}>", json!({"x": "<b>"})).unwrap(), "<<b>>");
        assert_eq!(render("[{{ missing }}]", json!({})).unwrap(), "[]");
        assert!(check("{{ unclosed").is_err());
        // Output past the limit is an error, not a 100 MB answer; multiplication is refused.
        let e = render(
            "{% for i in range(5000) %}{{ x }}{% endfor %}",
            json!({"x": "A".repeat(1000)}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("over"), "{e}");
        assert!(check("{{ 'A' * 100000000 }}").unwrap_err().to_string().contains("'*'"));
        assert!(check("{% set y = 'A' * n %}{{ y }}").is_err());
        assert!(check("{# a * comment #}Fine {{ name }} * text").is_ok());
        assert!(check(r#"{{ "**" ~ t ~ "**" }} {{ x|replace("*", "\\*") }} {% raw %}{{ a * b }}{% endraw %}"#).is_ok());
        assert!(check("{% for i in range(12000) %}{{ 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }}{% endfor %}").is_err());
        // Fuel stops runaway loops instead of hanging the gateway.
        assert!(render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            json!({})
        )
        .is_err());
    }
}
