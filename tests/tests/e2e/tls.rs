//! TLS on the native listener: certificates made by `openssl` for 127.0.0.1 under a test CA;
//! the Python SDK connects over https trusting only that CA and uses a tool; ALPN offers HTTP/2;
//! SIGHUP puts a renewed certificate in use without a restart, and a broken file leaves the one
//! in use.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mcpgw_e2e::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 it signed (`<name>.pem`, `<name>.key`).
fn certificates(dir: &Path, name: &str) {
    if !dir.join("ca.pem").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=mcpgw test CA",
            ],
        );
    }
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

/// The subject CN of the certificate the server at `port` presents now, and the ALPN protocol
/// it chose when offered h2 and http/1.1.
fn presented(port: u16, ca: &Path) -> (String, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-alpn",
            "h2,http/1.1",
            "-verify_return_error",
        ])
        .arg("-CAfile")
        .arg(ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("s_client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let cn = text
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("subject=").map(|s| {
                s.rsplit("CN")
                    .next()
                    .unwrap_or("")
                    .trim_start_matches([' ', '='])
                    .to_string()
            })
        })
        .unwrap_or_default();
    let alpn = text
        .lines()
        .find_map(|l| l.strip_prefix("ALPN protocol: "))
        .unwrap_or("none")
        .trim()
        .to_string();
    (cn, alpn)
}

#[tokio::test]
async fn the_python_sdk_uses_the_gateway_over_https_and_sighup_renews_the_certificate() {
    if target() == Target::Edge {
        return skip(
            "tls::the_python_sdk_uses_the_gateway_over_https_and_sighup_renews_the_certificate",
            "the edge's TLS is Cloudflare's; --tls-cert is the native listener's",
        );
    }
    let certs = TempDir::new("tls-certs");
    certificates(&certs.0, "first");
    let (cert, key) = (certs.join("live.pem"), certs.join("live.key"));
    std::fs::copy(certs.join("first.pem"), &cert).expect("copy");
    std::fs::copy(certs.join("first.key"), &key).expect("copy");
    let mut seeded = start_seeded(
        "sdk.toml",
        &[
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
    )
    .await
    .expect("start gateway");
    let port = seeded.gw.addr().port();
    let url = format!("https://127.0.0.1:{port}/mcp");
    let ca = certs.join("ca.pem");

    let mut cmd = python();
    cmd.arg(repo_root().join("tests/clients/tls_client.py"))
        .arg(&url)
        .arg(&ca);
    let (ok, out) = run_blocking(cmd, Duration::from_secs(120)).await;
    assert!(ok && out.contains("PASS"), "python client over https:\n{out}");

    let (cn, alpn) = presented(port, &ca);
    assert_eq!(cn, "first");
    assert_eq!(alpn, "h2", "HTTP/2 offered by ALPN");
    // Plain HTTP on the TLS port gets no answer.
    let plain = http_client()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.expect("r").status().is_success());

    // A broken file and SIGHUP: the certificate in use stays.
    std::fs::write(&cert, "not a certificate").expect("write");
    seeded.gw.native().signal("HUP").expect("SIGHUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(presented(port, &ca).0, "first");
    // A renewed one and SIGHUP: in use for the next connection, no restart.
    certificates(&certs.0, "second");
    std::fs::copy(certs.join("second.pem"), &cert).expect("copy");
    std::fs::copy(certs.join("second.key"), &key).expect("copy");
    seeded.gw.native().signal("HUP").expect("SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented(port, &ca).0 != "second" {
        assert!(Instant::now() < deadline, "the renewed certificate was not put in use");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = seeded.gw.native().read_log(Duration::from_millis(200)).join("");
    let all = seeded.gw.native().log.join("");
    assert!(all.contains("TLS certificate not reloaded"), "{log}");
    assert!(all.contains("TLS certificate reloaded"), "{log}");
}

/// A REST backend over https (`tests/fixture/https_backend.py`), stopped on drop.
struct HttpsBackend {
    child: std::process::Child,
    port: u16,
}

impl HttpsBackend {
    fn start(cert: &Path, key: &Path) -> Self {
        use std::io::BufRead;
        let mut child = python()
            .arg(repo_root().join("tests/fixture/https_backend.py"))
            .arg(cert)
            .arg(key)
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("https backend");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port");
        let port = line.trim().parse().expect("a port");
        Self { child, port }
    }
}

impl Drop for HttpsBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn https_tools_are_reached_when_their_certificate_is_trusted() {
    if target() == Target::Edge {
        return skip(
            "tls::https_tools_are_reached_when_their_certificate_is_trusted",
            "the edge's fetch checks certificates against Cloudflare's roots",
        );
    }
    let certs = TempDir::new("tls-backend");
    certificates(&certs.0, "backend");
    let backend = HttpsBackend::start(&certs.join("backend.pem"), &certs.join("backend.key"));
    let tool = serde_json::json!({"name": "secure", "url": format!("https://127.0.0.1:{}/secure", backend.port)});
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "secure", "arguments": {}}});
    let ca = certs.join("ca.pem");
    for (trusted, env) in [
        (true, vec![("SSL_CERT_FILE", ca.to_str().expect("utf-8"))]),
        (false, vec![]),
    ] {
        let dir = TempDir::new("tls-client");
        let gw = start_target_with(&dir, &[], &env).expect("start gateway");
        let r = http_client()
            .post(format!("{}/tools", gw.url()))
            .json(&tool)
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = http_client()
            .post(format!("{}/rpc", gw.url()))
            .json(&call)
            .send()
            .await
            .expect("call")
            .json()
            .await
            .expect("json");
        let text = v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if trusted {
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            assert_eq!(body, serde_json::json!({"path": "/secure", "over": "https"}), "{v}");
        } else {
            assert_eq!(v["result"]["isError"], true, "an untrusted certificate is refused: {v}");
            assert!(text.contains("certificate") || text.contains("TLS"), "{v}");
        }
    }
}

/// An MCP upstream behind mTLS (the fixture over https, asking every client for a certificate
/// the test CA signed): registered with its CA bundle and a client certificate it is reached
/// and its tools called; with the CA alone (no client certificate) the handshake is refused and
/// nothing is stored. The client key is sealed at rest and masked in every answer, and a PUT of
/// the masked value keeps it. On the edge such an upstream is refused with the reason (fetch can
/// present no client certificate).
#[tokio::test]
async fn an_upstream_behind_mtls_is_reached_only_with_its_client_certificate() {
    let certs = TempDir::new("mtls");
    certificates(&certs.0, "upstream");
    certificates(&certs.0, "client");
    let read = |name: &str| std::fs::read_to_string(certs.join(name)).expect("pem");
    let tls_arg = format!(
        "{},{},{}",
        certs.join("upstream.pem").display(),
        certs.join("upstream.key").display(),
        certs.join("ca.pem").display()
    );
    let fixture = Fixture::start_with("streamable-http", 0, None, &["--tls", &tls_arg]);
    assert!(fixture.url.starts_with("https://"), "{}", fixture.url);
    let dir = TempDir::new("mtls-gateway");
    let gw = start_target_with(&dir, &[], &[("MCPGW_ENCRYPTION_KEY", TEST_ENCRYPTION_KEY)]).expect("gateway");
    let url = gw.url();
    let http = http_client();
    let key = read("client.key");
    let with_cert = serde_json::json!({"name": "guarded", "url": format!("{}/mcp", fixture.url),
        "tls": {"ca": read("ca.pem"), "client_cert": read("client.pem"), "client_key": key}});
    let ca_only = serde_json::json!({"name": "nocert", "url": format!("{}/mcp", fixture.url),
        "tls": {"ca": read("ca.pem")}});

    let r = http
        .post(format!("{url}/gateways"))
        .json(&ca_only)
        .send()
        .await
        .expect("register");
    assert_eq!(
        r.status(),
        reqwest::StatusCode::BAD_GATEWAY,
        "without a client certificate"
    );
    let refused: serde_json::Value = r.json().await.expect("json");
    let r = http
        .post(format!("{url}/gateways"))
        .json(&with_cert)
        .send()
        .await
        .expect("register");
    let status = r.status();
    let body: serde_json::Value = r.json().await.expect("json");
    if target() == Target::Edge {
        assert_eq!(status, reqwest::StatusCode::BAD_GATEWAY, "{body}");
        assert!(body.to_string().contains("native gateway"), "{body}");
        return;
    }
    // TLS 1.3: the server refuses the certificate-less client after the handshake, at the
    // first request.
    assert_eq!(refused["error"]["code"], "upstream_unavailable", "{refused}");
    let r = http.get(format!("{url}/gateways/nocert")).send().await.expect("get");
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND, "nothing stored");
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    assert_eq!(body["tls"]["client_key"], "********", "{body}");
    assert!(body["tls"]["client_cert"]
        .as_str()
        .is_some_and(|c| c.contains("BEGIN CERTIFICATE")));
    let answer = call_tool(&http, url, None, "guarded__test_simple_text", serde_json::json!({})).await;
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("simple text")),
        "{answer}"
    );
    // A PUT of what GET returned keeps the stored key: the upstream is still reached.
    let mut back = get_json(&format!("{url}/gateways/guarded")).await;
    assert_eq!(back["tls"]["client_key"], "********", "{back}");
    back["timeout_ms"] = serde_json::json!(20000);
    let r = http
        .put(format!("{url}/gateways/guarded"))
        .json(&back)
        .send()
        .await
        .expect("put");
    assert_eq!(
        r.status(),
        reqwest::StatusCode::OK,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let r = http
        .post(format!("{url}/gateways/guarded/refresh"))
        .send()
        .await
        .expect("refresh");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    // The key is nowhere in clear in what the gateway stored.
    let marker = key.lines().nth(1).expect("a base64 line of the key");
    let mut stored = Vec::new();
    for e in std::fs::read_dir(&dir.0).expect("dir").flatten() {
        stored.extend(std::fs::read(e.path()).unwrap_or_default());
    }
    assert!(stored.windows(7).any(|w| w == b"guarded"), "the registry was written");
    assert!(
        !stored.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "the client key is stored in clear"
    );
}
