//! `WWW-Authenticate` challenges as an upstream sends them (RFC 9110 §11.6.1): the scheme and
//! its parameters, of which the MCP authorization spec reads `resource_metadata` (RFC 9728 §5.1),
//! `scope` and `error` (RFC 6750 §3). A header may hold several challenges, and a response several
//! headers.

/// One challenge: its scheme (lowercased) and parameters (names lowercased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    /// `bearer`, `basic`, `dpop`, ...
    pub scheme: String,
    /// The parameters in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a refusal's `Bearer` challenge tells an OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BearerChallenge {
    /// Where the protected resource's metadata is (RFC 9728 §5.1).
    pub resource_metadata: Option<String>,
    /// The scopes the request needs (space-separated in the header).
    pub scope: Option<String>,
    /// `invalid_token`, `insufficient_scope`, ...
    pub error: Option<String>,
}

/// The longest header value read; a longer one is read up to here.
const MAX_HEADER: usize = 8 * 1024;
/// The most challenges read from one response.
const MAX_CHALLENGES: usize = 16;

/// Every challenge in `values` (the `WWW-Authenticate` headers of one response, in order). What
/// cannot be read is skipped, never an error: a server's odd header costs only what it says.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for v in values {
        let v = &v[..floor_char_boundary(v, MAX_HEADER)];
        parse_one(v, &mut out);
        if out.len() >= MAX_CHALLENGES {
            out.truncate(MAX_CHALLENGES);
            break;
        }
    }
    out
}

/// The first `Bearer` challenge's parameters, if there is one.
pub fn bearer<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<BearerChallenge> {
    let c = parse(values).into_iter().find(|c| c.scheme == "bearer")?;
    let own = |k: &str| c.param(k).filter(|v| !v.is_empty()).map(str::to_string);
    Some(BearerChallenge {
        resource_metadata: own("resource_metadata"),
        scope: own("scope"),
        error: own("error"),
    })
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0)
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Reads one header value: `scheme [token68 | param *( "," param )] *( "," challenge )`.
fn parse_one(v: &str, out: &mut Vec<Challenge>) {
    let s: Vec<char> = v.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == ' ' || s[*i] == '\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> String {
        let start = *i;
        while *i < s.len() && is_tchar(s[*i]) {
            *i += 1;
        }
        s[start..*i].iter().collect()
    };
    let mut current: Option<Challenge> = None;
    loop {
        skip_ws(&mut i);
        while i < s.len() && s[i] == ',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= s.len() {
            break;
        }
        let word = token(&mut i);
        if word.is_empty() {
            // Not a token: skip to the next comma.
            while i < s.len() && s[i] != ',' {
                i += 1;
            }
            continue;
        }
        skip_ws(&mut i);
        if i < s.len() && s[i] == '=' && current.is_some() && !(i + 1 < s.len() && s[i + 1] == '=') {
            // A parameter of the current challenge.
            i += 1;
            skip_ws(&mut i);
            let value = if i < s.len() && s[i] == '"' {
                i += 1;
                let mut val = String::new();
                while i < s.len() && s[i] != '"' {
                    if s[i] == '\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    val.push(s[i]);
                    i += 1;
                }
                i += 1; // the closing quote (or the end)
                val
            } else {
                token(&mut i)
            };
            if let Some(c) = current.as_mut() {
                if c.params.len() < 32 {
                    c.params.push((word.to_ascii_lowercase(), value));
                }
            }
            continue;
        }
        // A new challenge's scheme.
        out.extend(current.take());
        current = Some(Challenge {
            scheme: word.to_ascii_lowercase(),
            params: vec![],
        });
        // A token68 (`Basic abc==`) right after the scheme is no parameter: skip it.
        skip_ws(&mut i);
        let mut j = i;
        while j < s.len() && (s[j].is_ascii_alphanumeric() || "-._~+/".contains(s[j])) {
            j += 1;
        }
        let body = j > i;
        while j < s.len() && s[j] == '=' {
            j += 1;
        }
        let mut k = j;
        while k < s.len() && (s[k] == ' ' || s[k] == '\t') {
            k += 1;
        }
        if body && (k >= s.len() || s[k] == ',') {
            i = k;
        }
    }
    out.extend(current);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_parameters_are_read_quoted_or_not_in_any_case() {
        let h = r#"Bearer realm="mcp", resource_metadata="https://up.example/.well-known/oauth-protected-resource/mcp", scope="files:read files:write""#;
        let b = bearer([h]).expect("a bearer challenge");
        assert_eq!(
            b.resource_metadata.as_deref(),
            Some("https://up.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(b.scope.as_deref(), Some("files:read files:write"));
        assert_eq!(b.error, None);
        let b = bearer(["bearer Error=insufficient_scope,SCOPE=\"a \\\"b\\\"\""]).expect("bearer");
        assert_eq!(b.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(b.scope.as_deref(), Some("a \"b\""));
    }

    #[test]
    fn several_challenges_in_one_header_or_several_are_told_apart() {
        let cs = parse([
            r#"Basic realm="admin", charset="UTF-8", Bearer error="invalid_token", scope="x""#,
            "DPoP algs=\"ES256\"",
        ]);
        let schemes: Vec<&str> = cs.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer", "dpop"]);
        assert_eq!(cs[0].param("charset"), Some("UTF-8"));
        assert_eq!(cs[1].param("error"), Some("invalid_token"));
        assert_eq!(cs[1].param("scope"), Some("x"));
        // A token68 after the scheme is not taken for a parameter.
        let cs = parse(["Negotiate abc123==, Bearer scope=\"y\""]);
        assert_eq!(cs.len(), 2, "{cs:?}");
        assert_eq!(cs[1].param("scope"), Some("y"));
    }

    #[test]
    fn odd_headers_cost_only_what_they_say() {
        assert_eq!(bearer([""]), None);
        assert_eq!(bearer(["Basic realm=x"]), None);
        assert_eq!(bearer([",,, ,"]), None);
        // An unterminated quote ends the value at the end of the header.
        let b = bearer([r#"Bearer scope="a b"#]).expect("bearer");
        assert_eq!(b.scope.as_deref(), Some("a b"));
        // Empty values are no values.
        assert_eq!(
            bearer([r#"Bearer resource_metadata="""#])
                .expect("bearer")
                .resource_metadata,
            None
        );
        // Huge or many: bounded.
        let long = format!("Bearer scope=\"{}\"", "x".repeat(100_000));
        assert!(bearer([long.as_str()]).expect("bearer").scope.unwrap().len() <= MAX_HEADER);
        let many = "A, ".repeat(1000);
        assert!(parse([many.as_str()]).len() <= MAX_CHALLENGES);
        // Non-ASCII is carried, never split inside a character.
        let b = bearer(["Bearer scope=\"é\""]).expect("bearer");
        assert_eq!(b.scope.as_deref(), Some("é"));
    }
}
