//! A browser of the few pages an authorization flow shows (the gateway's and an authorization
//! server's): follows nothing by itself, keeps cookies per host, reads forms' hidden fields.

/// One page's answer.
#[derive(Debug)]
pub struct Visit {
    /// Its status.
    pub status: u16,
    /// Where it sends the browser, made absolute.
    pub location: Option<String>,
    /// Its body.
    pub body: String,
}

/// The browser.
pub struct Browser {
    http: reqwest::Client,
    /// `host:port` → name → value.
    cookies: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// A public origin and where it is really served (a TLS front the test plays).
    front: Option<(String, String)>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

fn origin_of(url: &str) -> String {
    url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/")
}

impl Browser {
    /// A browser with no cookies.
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            http,
            cookies: Default::default(),
            front: None,
        }
    }

    /// Pages under the origin `public` (`https://name`) are fetched from `real` instead, as a
    /// TLS front would serve them.
    pub fn front(&mut self, public: &str, real: &str) {
        self.front = Some((
            public.trim_end_matches('/').to_string(),
            real.trim_end_matches('/').to_string(),
        ));
    }

    /// GETs `url` (or POSTs `form`).
    pub async fn visit(&mut self, url: &str, form: Option<&[(&str, &str)]>) -> Visit {
        let shown = origin_of(url);
        let url = match &self.front {
            Some((public, real)) if url.starts_with(&format!("{public}/")) => format!("{real}{}", &url[public.len()..]),
            _ => url.to_string(),
        };
        let url = url.as_str();
        let origin = origin_of(url);
        let mut req = match form {
            Some(f) => self.http.post(url).form(f),
            None => self.http.get(url),
        };
        let jar: Vec<String> = self
            .cookies
            .get(&origin)
            .map(|c| c.iter().map(|(k, v)| format!("{k}={v}")).collect())
            .unwrap_or_default();
        if !jar.is_empty() {
            req = req.header("cookie", jar.join("; "));
        }
        let r = req.send().await.expect("request");
        for c in r.headers().get_all("set-cookie") {
            let text = c.to_str().unwrap_or_default();
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                let jar = self.cookies.entry(origin.clone()).or_default();
                if text.contains("Max-Age=0") {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_string(), v.to_string());
                }
            }
        }
        let status = r.status().as_u16();
        let location = r.headers().get("location").map(|l| {
            let l = l.to_str().expect("location").to_string();
            // A relative Location is taken against the page's origin, as a browser does.
            match l.strip_prefix('/') {
                Some(path) => format!("{shown}/{path}"),
                None => l,
            }
        });
        let body = r.text().await.unwrap_or_default();
        Visit { status, location, body }
    }

    /// GETs `url` (or POSTs `form`): the `Location` it answers with (it must redirect).
    pub async fn go(&mut self, url: &str, form: Option<&[(&str, &str)]>) -> String {
        let v = self.visit(url, form).await;
        assert!((300..400).contains(&v.status), "{url}: {} {}", v.status, v.body);
        v.location.expect("a Location")
    }
}

/// The value of the hidden field `name` in a page's form.
pub fn hidden(body: &str, name: &str) -> Option<String> {
    let at = body.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &body[at + name.len() + 15..];
    let raw = &rest[..rest.find('"')?];
    // As a browser reads it: entities decoded.
    Some(
        raw.replace("&#x2f;", "/")
            .replace("&#x27;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}
