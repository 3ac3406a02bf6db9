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

/// Checks that a template compiles.
pub fn check(source: &str) -> Result<(), String> {
    env().template_from_str(source).map(|_| ()).map_err(|e| e.to_string())
}

/// Renders a template with a context (any serializable map).
pub fn render<C: Serialize>(source: &str, ctx: C) -> Result<String, String> {
    let env = env();
    let tpl = env.template_from_str(source).map_err(|e| e.to_string())?;
    tpl.render(ctx).map_err(|e| e.to_string())
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
        // Fuel stops runaway loops instead of hanging the gateway.
        assert!(render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            json!({})
        )
        .is_err());
    }
}
