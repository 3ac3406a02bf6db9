//! Multi round-trip requests in front of a session-era upstream: a 2026-07-28 client calls the
//! fixture's sampling and elicitation tools through the gateway, gets `input_required`, and its
//! retries carry the answers back to the parked upstream call; several rounds; a capability not
//! declared (-32021); and every kind of bad `requestState` refused (-32602). In front of a
//! 2026-07-28 upstream the upstream's own `requestState` travels sealed in the gateway's
//! envelope, with the same refusals.

use mcpgw_e2e::{
    http_client, sign_jwt, skip, start_target_with, target, unix_now, Fixture, Target, TempDir, TestGateway,
};
use serde_json::{json, Value};

use crate::stateless::{meta, post, Answer};

const SECRET: &str = "Qm7vR2xT9pLk4sWn8BjY1cHf6ZdG3aEu5NoK0iVr";

fn token(sub: &str) -> String {
    let now = unix_now();
    let claims =
        json!({"sub": sub, "iss": "mcpgw", "aud": "mcpgw", "iat": now, "exp": now + 600, "scope": "mcpgw:admin"});
    format!("Bearer {}", sign_jwt("HS256", SECRET, claims))
}

struct Setup {
    gw: TestGateway,
    _fixture: Fixture,
    dir: TempDir,
}

impl Setup {
    fn mcp(&self) -> String {
        format!("{}/mcp", self.gw.url())
    }
}

/// A gateway with auth on (HS256) and the fixture registered as `fx`; `settings` added.
async fn start(settings: &[&str]) -> Setup {
    start_with(settings, &[]).await
}

/// [`start`] with the fixture started with `fixture_args` (`["v2-modern"]`: the dual-era
/// fixture in its 2026-07-28-only mode instead).
async fn start_with(settings: &[&str], fixture_args: &[&str]) -> Setup {
    let dir = TempDir::new("mrtr");
    let env = [("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)];
    let gw = start_target_with(&dir, settings, &env).expect("gateway");
    let calls = dir.join("calls.jsonl");
    let fixture = match fixture_args {
        ["v2-modern"] => Fixture::modern("modern", Some(&calls)),
        _ => Fixture::start_with("streamable-http", 0, Some(&calls), fixture_args),
    };
    let r = http_client()
        .post(format!("{}/gateways", gw.url()))
        .header("authorization", token("admin"))
        .json(&json!({"name": "fx", "url": format!("{}/mcp", fixture.url)}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    Setup {
        gw,
        _fixture: fixture,
        dir,
    }
}

fn caps(c: Value) -> Value {
    let mut m = meta();
    m["io.modelcontextprotocol/clientCapabilities"] = c;
    m
}

/// A stateless `tools/call` by `sub`, with `extra` merged into its params.
async fn call(s: &Setup, sub: &str, id: u64, tool: &str, args: Value, capabilities: Value, extra: Value) -> Answer {
    let mut p = json!({"name": tool, "arguments": args, "_meta": caps(capabilities)});
    if let Some(e) = extra.as_object() {
        for (k, v) in e {
            p[k] = v.clone();
        }
    }
    let auth = token(sub);
    post(
        &s.mcp(),
        json!(id),
        "tools/call",
        p,
        &[("authorization", auth.as_str())],
    )
    .await
}

fn result(a: &Answer) -> &Value {
    assert!(a.last().get("error").is_none(), "{:?}", a.messages);
    &a.last()["result"]
}

/// The one input request of an `input_required` result: its key, method, params; and the state.
fn input(a: &Answer) -> (String, String, Value, String) {
    let r = result(a);
    assert_eq!(r["resultType"], "input_required", "{r}");
    let reqs = r["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(reqs.len(), 1, "{r}");
    let (k, v) = reqs.iter().next().expect("one request");
    let state = r["requestState"].as_str().expect("requestState").to_string();
    (
        k.clone(),
        v["method"].as_str().expect("a method").to_string(),
        v["params"].clone(),
        state,
    )
}

fn error_code(a: &Answer) -> i64 {
    a.last()["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("an error: {:?}", a.messages))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_elicitation_reach_a_stateless_client_as_input_required() {
    rounds(&[]).await;
}

/// The same with an upstream that sends its requests on its standalone stream (not the call's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_an_upstream_sends_on_its_standalone_stream_reach_a_stateless_client_too() {
    rounds(&["--standalone-requests", "--event-store"]).await;
}

async fn rounds(fixture_args: &[&str]) {
    let s = start_with(&[], fixture_args).await;
    let all = json!({"sampling": {}, "elicitation": {}});

    // Sampling: one round.
    let first = call(
        &s,
        "alice",
        1,
        "fx__test_sampling",
        json!({"prompt": "capital of France?"}),
        all.clone(),
        json!({}),
    )
    .await;
    let (key, method, params, state) = input(&first);
    assert_eq!(method, "sampling/createMessage");
    assert_eq!(params["messages"][0]["content"]["text"], "capital of France?");
    assert!(
        params.get("_meta").is_none_or(|m| m.get("relatedRequestId").is_none()),
        "{params}"
    );
    let answer = json!({"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "m", "stopReason": "endTurn"});
    let done = call(
        &s,
        "alice",
        2,
        "fx__test_sampling",
        json!({"prompt": "capital of France?"}),
        all.clone(),
        json!({"requestState": state, "inputResponses": {key.clone(): answer.clone()}}),
    )
    .await;
    let r = result(&done);
    assert_eq!(r["resultType"], "complete", "{r}");
    assert_eq!(r["content"][0]["text"], "LLM response: Paris");

    // The same state again: the call it named is over.
    let replay = call(
        &s,
        "alice",
        3,
        "fx__test_sampling",
        json!({"prompt": "capital of France?"}),
        all.clone(),
        json!({"requestState": state, "inputResponses": {key: answer}}),
    )
    .await;
    assert_eq!(error_code(&replay), -32602);

    // Elicitation.
    let first = call(
        &s,
        "alice",
        4,
        "fx__test_elicitation",
        json!({"message": "who?"}),
        all.clone(),
        json!({}),
    )
    .await;
    let (key, method, params, state) = input(&first);
    assert_eq!(
        (method.as_str(), &params["message"]),
        ("elicitation/create", &json!("who?"))
    );
    let done = call(&s, "alice", 5, "fx__test_elicitation", json!({"message": "who?"}), all.clone(),
        json!({"requestState": state, "inputResponses": {key: {"action": "accept", "content": {"username": "ann", "email": "a@x"}}}})).await;
    assert!(
        result(&done)["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("action=accept")),
        "{:?}",
        done.messages
    );

    // Two rounds of the upstream's, with a retry in between that forgot its answer (asked again).
    let args = json!({});
    let r1 = call(
        &s,
        "alice",
        6,
        "fx__mcpgw_ask_twice",
        args.clone(),
        all.clone(),
        json!({}),
    )
    .await;
    let (k1, m1, _, st1) = input(&r1);
    assert_eq!(m1, "sampling/createMessage");
    let again = call(
        &s,
        "alice",
        7,
        "fx__mcpgw_ask_twice",
        args.clone(),
        all.clone(),
        json!({"requestState": st1, "inputResponses": {}}),
    )
    .await;
    let (k1b, m1b, _, st1b) = input(&again);
    assert_eq!(
        (k1b.as_str(), m1b.as_str()),
        (k1.as_str(), "sampling/createMessage"),
        "the same request asked again"
    );
    assert_ne!(st1b, st1);
    let llm = json!({"role": "assistant", "content": {"type": "text", "text": "one"}, "model": "m"});
    let r2 = call(
        &s,
        "alice",
        8,
        "fx__mcpgw_ask_twice",
        args.clone(),
        all.clone(),
        json!({"requestState": st1b, "inputResponses": {k1b: llm}}),
    )
    .await;
    let (k2, m2, _, st2) = input(&r2);
    assert_eq!(m2, "elicitation/create");
    assert_ne!(k2, k1, "keys are unique within the request");
    let r3 = call(
        &s,
        "alice",
        9,
        "fx__mcpgw_ask_twice",
        args,
        all.clone(),
        json!({"requestState": st2, "inputResponses": {k2: {"action": "accept", "content": {"name": "bo"}}}}),
    )
    .await;
    assert_eq!(result(&r3)["content"][0]["text"], "llm=one user={\"name\":\"bo\"}");

    // Sampling not declared: -32021 naming it, and the upstream's request refused.
    let undeclared = call(
        &s,
        "alice",
        10,
        "fx__test_sampling",
        json!({"prompt": "x"}),
        json!({"elicitation": {}}),
        json!({}),
    )
    .await;
    assert_eq!((undeclared.status.as_u16(), error_code(&undeclared)), (400, -32021));
    assert!(
        undeclared.last()["error"]["data"]["requiredCapabilities"]["sampling"].is_object(),
        "{:?}",
        undeclared.messages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_state_that_is_tampered_foreign_for_another_request_or_late_is_refused() {
    // Parked calls wait at most --call-max-ms.
    let s = start(&["--call-max-ms", "1500"]).await;
    let all = json!({"sampling": {}});
    let args = json!({"prompt": "p"});
    let first = call(
        &s,
        "alice",
        1,
        "fx__test_sampling",
        args.clone(),
        all.clone(),
        json!({}),
    )
    .await;
    let (key, _, _, state) = input(&first);
    let answer = json!({"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m"});
    let retry = |state: String| json!({"requestState": state, "inputResponses": {key.clone(): answer.clone()}});

    // Tampered: one character of the sealed part changed.
    let mut chars: Vec<char> = state.chars().collect();
    let i = chars.len() - 6;
    chars[i] = if chars[i] == 'x' { 'y' } else { 'x' };
    let tampered: String = chars.into_iter().collect();
    for (sub, tool, args, st, why) in [
        ("alice", "fx__test_sampling", args.clone(), tampered, "altered"),
        (
            "mallory",
            "fx__test_sampling",
            args.clone(),
            state.clone(),
            "another caller",
        ),
        (
            "alice",
            "fx__test_sampling",
            json!({"prompt": "other"}),
            state.clone(),
            "another request",
        ),
        (
            "alice",
            "fx__test_elicitation",
            json!({"message": "m"}),
            state.clone(),
            "another request",
        ),
    ] {
        let a = call(&s, sub, 2, tool, args, all.clone(), retry(st)).await;
        assert_eq!(error_code(&a), -32602, "{why}: {:?}", a.messages);
        let msg = a.last()["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(why), "{why}: {msg}");
    }
    // None of those used it up: the owner's retry still completes.
    let ok = call(
        &s,
        "alice",
        3,
        "fx__test_sampling",
        args.clone(),
        all.clone(),
        retry(state),
    )
    .await;
    assert_eq!(result(&ok)["content"][0]["text"], "LLM response: ok");

    // Late: past its expiry the state is refused, and the parked call was cancelled upstream.
    let first = call(
        &s,
        "alice",
        4,
        "fx__test_sampling",
        args.clone(),
        all.clone(),
        json!({}),
    )
    .await;
    let (key, _, _, state) = input(&first);
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    let late = call(
        &s,
        "alice",
        5,
        "fx__test_sampling",
        args,
        all,
        json!({"requestState": state, "inputResponses": {key: answer}}),
    )
    .await;
    assert_eq!(error_code(&late), -32602);
    let msg = late.last()["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("expired"), "{msg}");
    let calls = std::fs::read_to_string(s.dir.join("calls.jsonl")).expect("calls log");
    let aborted = calls
        .lines()
        .filter(|l| l.contains("\"tool-aborted\"") && l.contains("\"test_sampling\""))
        .count();
    assert_eq!(aborted, 1, "the abandoned call (only) was cancelled upstream: {calls}");
}

/// A 2026-07-28 client's info and log level travel to a session-era upstream with each request
/// (the shared upstream session's own hello is the gateway's): the request's `_meta` reaches it
/// as the client sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_clients_info_and_log_level_reach_a_session_era_upstream() {
    let s = start(&[]).await;
    let mut meta = caps(json!({}));
    meta["io.modelcontextprotocol/clientInfo"] = json!({"name": "probe-client", "version": "7.1"});
    meta["io.modelcontextprotocol/logLevel"] = json!("warning");
    let a = call(
        &s,
        "alice",
        1,
        "fx__mcpgw_meta",
        json!({}),
        json!({}),
        json!({"_meta": meta}),
    );
    let r = result(&a.await).clone();
    let seen: Value = serde_json::from_str(r["content"][0]["text"].as_str().expect("text")).expect("JSON");
    assert_eq!(
        seen["io.modelcontextprotocol/clientInfo"]["name"], "probe-client",
        "{seen}"
    );
    assert_eq!(seen["io.modelcontextprotocol/logLevel"], "warning", "{seen}");
}

/// In 2026-07-28 closing the response stream cancels the request: the upstream call serving a
/// stateless `tools/call` is cancelled when its client goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_stateless_calls_stream_cancels_it_upstream() {
    if target() == Target::Edge {
        // Under wrangler dev a client's disconnect never reaches the Worker: its response
        // stream is not cancelled and runs to its end (checked with a listen stream and with
        // this call, whose POST wrangler logs as done after the tool's 8 s), so there is
        // nothing here to cancel from.
        return skip(
            "closing_a_stateless_calls_stream_cancels_it_upstream",
            "wrangler dev does not pass a client's disconnect on to the Worker",
        );
    }
    let s = start(&[]).await;
    let mut p = json!({"name": "fx__mcpgw_sleep", "arguments": {"ms": 8000}, "_meta": meta()});
    p["_meta"]["progressToken"] = json!("t");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": p});
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(800))
        .build()
        .expect("client");
    let r = client
        .post(s.mcp())
        .header("authorization", token("alice"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "fx__mcpgw_sleep")
        .json(&body)
        .send()
        .await;
    // The client gives up (its timeout) and closes the connection, with or without headers read.
    if let Ok(r) = r {
        let _ = r.text().await;
    }
    drop(client);
    let log = s.dir.join("calls.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        if calls.contains("\"cancelled\"") && calls.contains("mcpgw_sleep") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream call was not cancelled: {calls}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A 2026-07-28 upstream's own `requestState` reaches the client sealed by the gateway: the
/// client never sees the upstream's value; a sealed state that was altered, is presented by
/// another subject, for another request, a second time (replayed) or after its expiry is
/// refused (-32602) without reaching the upstream; the owner's retry gets the upstream's state
/// back byte for byte (the fixture answers "state-ok" only for its own signed state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_upstreams_request_state_is_sealed_and_checked_by_the_gateway() {
    let s = start_with(&["--call-max-ms", "1500"], &["v2-modern"]).await;
    let tool = "fx__test_input_required_result_request_state";
    let first = call(&s, "alice", 1, tool, json!({}), json!({"elicitation": {}}), json!({})).await;
    let (key, method, _, state) = input(&first);
    assert_eq!(method, "elicitation/create");
    assert!(state.starts_with("up."), "the gateway's envelope: {state}");
    let answer = json!({"action": "accept", "content": {"ok": true}});
    let retry = |state: &str| json!({"requestState": state, "inputResponses": {key.clone(): answer.clone()}});
    let upstream_calls = || {
        std::fs::read_to_string(s.dir.join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(tool.trim_start_matches("fx__")))
            .count()
    };
    assert_eq!(upstream_calls(), 1);
    let mut chars: Vec<char> = state.chars().collect();
    let i = chars.len() - 6;
    chars[i] = if chars[i] == 'x' { 'y' } else { 'x' };
    let tampered: String = chars.into_iter().collect();
    for (sub, tool, st, why) in [
        ("alice", tool, tampered.as_str(), "altered"),
        ("mallory", tool, state.as_str(), "another caller"),
        (
            "alice",
            "fx__test_input_required_result_tampered_state",
            state.as_str(),
            "another request",
        ),
    ] {
        let a = call(&s, sub, 2, tool, json!({}), json!({"elicitation": {}}), retry(st)).await;
        assert_eq!(error_code(&a), -32602, "{why}: {:?}", a.messages);
        let msg = a.last()["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(why), "{why}: {msg}");
    }
    assert_eq!(upstream_calls(), 1, "no refused retry reached the upstream");
    let ok = call(
        &s,
        "alice",
        3,
        tool,
        json!({}),
        json!({"elicitation": {}}),
        retry(&state),
    )
    .await;
    let text = result(&ok)["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("state-ok"), "{text}");
    // Good for one retry: the same state again is a replay.
    let again = call(
        &s,
        "alice",
        4,
        tool,
        json!({}),
        json!({"elicitation": {}}),
        retry(&state),
    )
    .await;
    assert_eq!(error_code(&again), -32602, "{:?}", again.messages);
    let msg = again.last()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("already used"), "{msg}");
    assert_eq!(upstream_calls(), 2, "the replay did not reach the upstream");
    let fresh = call(&s, "alice", 5, tool, json!({}), json!({"elicitation": {}}), json!({})).await;
    let (_, _, _, state) = input(&fresh);
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    let late = call(
        &s,
        "alice",
        6,
        tool,
        json!({}),
        json!({"elicitation": {}}),
        retry(&state),
    )
    .await;
    assert_eq!(error_code(&late), -32602);
    let msg = late.last()["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("expired"), "{msg}");
}
