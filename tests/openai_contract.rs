//! The OpenAI-compatible analyzer against a local HTTP server that records and
//! checks every request and returns canned answers. Frames come from real footage.

mod common;

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use homesec::analyzer::openai::{self, OpenAiConfig};
use homesec::analyzer::{VlmAnalyzer, VlmError};
use homesec::domain::{Clip, Detection, FilterResult, RiskLevel};
use homesec::plugin::PluginContext;
use serde_json::{Value, json};

const KEY_ENV: &str = "HOMESEC_TEST_OPENAI_KEY";
const KEY: &str = "sk-test-0123456789abcdef";
const MAX_FRAMES: u32 = 4;
const MAX_SIZE: u32 = 320;

fn set_key() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any analyzer is built, to a value no other code
        // changes; Rust's own env accesses are serialised by std, and nothing in
        // these tests reads the environment from C code concurrently.
        unsafe { std::env::set_var(KEY_ENV, KEY) };
    });
}

#[derive(Clone)]
enum Reply {
    Json(Value),
    Status(u16, String),
    Slow(Duration, Value),
}

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    auth: Option<String>,
    body: Value,
    at: Instant,
}

struct ServerState {
    reply: Reply,
    log: Mutex<Vec<Recorded>>,
}

struct Server {
    base_url: String,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().expect("log").clone()
    }
}

async fn handle(
    State(s): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = Recorded {
        method,
        path: uri.path().to_owned(),
        auth: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    };
    s.log.lock().expect("log").push(rec);
    match &s.reply {
        Reply::Json(v) => axum::Json(v.clone()).into_response(),
        Reply::Status(code, text) => {
            (StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), text.clone()).into_response()
        }
        Reply::Slow(d, v) => {
            tokio::time::sleep(*d).await;
            axum::Json(v.clone()).into_response()
        }
    }
}

async fn serve(reply: Reply) -> Server {
    let state = Arc::new(ServerState { reply, log: Mutex::new(Vec::new()) });
    let app = Router::new().fallback(handle).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { base_url: format!("http://{addr}/v1"), state, task }
}

fn ctx() -> PluginContext {
    PluginContext {
        layout: homesec::plugin::DataLayout::new(std::env::temp_dir()),
        config_dir: std::env::temp_dir(),
        device_id: "testbox".into(),
        cameras: vec!["front_door".into()],
        client_tag: None,
    }
}

fn config(base_url: &str) -> OpenAiConfig {
    set_key();
    OpenAiConfig {
        base_url: base_url.to_owned(),
        api_key_env: Some(KEY_ENV.into()),
        timeout_s: 5.0,
        max_frames: MAX_FRAMES,
        max_size: MAX_SIZE,
        quality: 80,
        ..OpenAiConfig::with_model("test-vlm")
    }
}

fn clip() -> Clip {
    let path = common::footage("scene_empty_people_empty.mp4");
    Clip {
        clip_id: "front_door_1700000000".into(),
        camera: "front_door".into(),
        local_path: path.to_string_lossy().into_owned(),
        start_ms: 1_700_000_000_000,
        end_ms: 1_700_000_012_000,
        source_backend: "folder".into(),
    }
}

fn filter() -> FilterResult {
    FilterResult {
        detected_classes: vec!["person".into()],
        alert_classes: vec!["person".into()],
        confidence: 0.83,
        model: "yolox_nano".into(),
        sampled_frames: 24,
        detections: vec![Detection::new("person", 0.83, [10.0, 20.0, 80.0, 200.0], 4.5)],
    }
}

fn answer(content: Value) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test-vlm-2025-01-01",
        "choices": [{ "index": 0, "finish_reason": "stop",
            "message": { "role": "assistant", "content": content, "refusal": null } }],
        "usage": { "prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290 }
    })
}

fn analysis_json(activity: &str) -> String {
    json!({
        "risk_level": "medium",
        "activity_type": activity,
        "summary": "A person walks up to the front door and looks around before leaving.",
        "entities_timeline": [
            { "ts_s": 3.0, "entity": "person", "description": "enters from the left" },
            { "ts_s": 7.5, "entity": "person", "description": "leaves towards the street" }
        ],
        "requires_review": true
    })
    .to_string()
}

/// Width and height from a JPEG's SOF marker.
fn jpeg_size(b: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u32;
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u32;
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// Checks one recorded request against the contract; returns the number of frames.
fn check_request(r: &Recorded, expect_auth: bool, activity_types: &[String]) -> usize {
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/v1/chat/completions");
    if expect_auth {
        assert_eq!(r.auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    } else {
        assert_eq!(r.auth, None, "no key configured, no Authorization header");
    }
    let b = &r.body;
    assert_eq!(b["model"], "test-vlm");
    let rf = &b["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["strict"], true);
    assert!(rf["json_schema"]["name"].as_str().is_some_and(|n| !n.is_empty()));
    let schema = &rf["json_schema"]["schema"];
    assert_eq!(schema["properties"]["activity_type"]["enum"], json!(activity_types));
    assert_eq!(schema["properties"]["risk_level"]["enum"], json!(["low", "medium", "high"]));
    let required: Vec<&str> =
        schema["required"].as_array().expect("required").iter().filter_map(Value::as_str).collect();
    for f in ["risk_level", "activity_type", "summary", "entities_timeline", "requires_review"] {
        assert!(required.contains(&f), "{f} not required");
    }

    let messages = b["messages"].as_array().expect("messages");
    let user = messages.iter().find(|m| m["role"] == "user").expect("user message");
    let parts = user["content"].as_array().expect("content parts");
    let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n");
    assert!(text.contains("front_door"), "camera name missing: {text}");
    assert!(text.contains("12.0 s"), "clip duration missing: {text}");
    assert!(text.contains("person") && text.contains("4.5 s"), "detections missing: {text}");

    let urls: Vec<&str> = parts
        .iter()
        .filter(|p| p["type"] == "image_url")
        .map(|p| p["image_url"]["url"].as_str().expect("url"))
        .collect();
    for url in &urls {
        let b64 = url.strip_prefix("data:image/jpeg;base64,").expect("JPEG data URL");
        let jpeg = base64::engine::general_purpose::STANDARD.decode(b64).expect("valid base64");
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "JPEG SOI");
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9], "JPEG EOI");
        let (w, h) = jpeg_size(&jpeg).expect("JPEG has a frame header");
        assert!(w.max(h) <= MAX_SIZE && w.min(h) > 0, "frame {w}x{h} exceeds {MAX_SIZE}");
    }
    urls.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_answer_becomes_an_analysis_result() {
    let server = serve(Reply::Json(answer(json!(analysis_json("person_at_door"))))).await;
    let cfg = config(&server.base_url);
    let types = cfg.activity_types.clone();
    let vlm = openai::build(cfg, &ctx()).expect("build");
    assert_eq!(vlm.name(), "openai");
    let a = vlm.analyze(&clip(), &filter()).await.expect("analysis");
    assert_eq!(a.risk_level, RiskLevel::Medium);
    assert_eq!(a.activity_type, "person_at_door");
    assert!(a.summary.starts_with("A person walks up"));
    assert_eq!(a.entities_timeline.len(), 2);
    assert_eq!(a.entities_timeline[1].ts_s, 7.5);
    assert!(a.requires_review);
    assert_eq!(a.model, "test-vlm-2025-01-01");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let frames = check_request(&reqs[0], true, &types);
    assert_eq!(frames, MAX_FRAMES as usize, "expected {MAX_FRAMES} frames from a 12 s clip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_servers_need_no_key_and_custom_activity_types_are_enforced() {
    let server = serve(Reply::Json(answer(json!(analysis_json("garden_visitor"))))).await;
    let types: Vec<String> = vec!["garden_visitor".into(), "other".into()];
    let cfg = OpenAiConfig {
        api_key_env: None,
        activity_types: types.clone(),
        temperature: Some(0.0),
        ..config(&server.base_url)
    };
    let vlm = openai::build(cfg, &ctx()).expect("build");
    let a = vlm.analyze(&clip(), &filter()).await.expect("analysis");
    assert_eq!(a.activity_type, "garden_visitor");
    let reqs = server.requests();
    check_request(&reqs[0], false, &types);
    assert_eq!(reqs[0].body["temperature"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_that_is_not_json_is_malformed() {
    let server = serve(Reply::Json(answer(json!("The clip shows a person at the door. Risk: low.")))).await;
    let vlm = openai::build(config(&server.base_url), &ctx()).expect("build");
    match vlm.analyze(&clip(), &filter()).await {
        Err(VlmError::Malformed(m)) => assert!(m.contains("not JSON"), "{m}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_outside_the_list_is_malformed() {
    let server = serve(Reply::Json(answer(json!(analysis_json("burglary_in_progress"))))).await;
    let vlm = openai::build(config(&server.base_url), &ctx()).expect("build");
    match vlm.analyze(&clip(), &filter()).await {
        Err(VlmError::Malformed(m)) => assert!(m.contains("burglary_in_progress"), "{m}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_reported_as_such() {
    let body = json!({
        "model": "test-vlm",
        "choices": [{ "index": 0, "finish_reason": "stop",
            "message": { "role": "assistant", "content": null, "refusal": "I'm sorry, I can't help with that." } }]
    });
    let server = serve(Reply::Json(body)).await;
    let vlm = openai::build(config(&server.base_url), &ctx()).expect("build");
    match vlm.analyze(&clip(), &filter()).await {
        Err(e @ VlmError::Refused(_)) => assert!(e.to_string().contains("can't help"), "{e}"),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500_is_a_transient_status_error_with_a_body_excerpt() {
    let long_body = format!("upstream model crashed: {}", "x".repeat(5000));
    let server = serve(Reply::Status(500, long_body)).await;
    let vlm = openai::build(config(&server.base_url), &ctx()).expect("build");
    let err = vlm.analyze(&clip(), &filter()).await.expect_err("500");
    assert!(err.is_transient());
    match &err {
        VlmError::Status { status, body, endpoint } => {
            assert_eq!(*status, 500);
            assert!(body.starts_with("upstream model crashed"), "{body}");
            assert!(body.chars().count() < 400, "excerpt too long: {}", body.len());
            assert!(endpoint.ends_with("/v1/chat/completions"));
        }
        other => panic!("expected Status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401_is_permanent_and_the_key_is_not_echoed() {
    let server = serve(Reply::Status(401, format!("Incorrect API key provided: {KEY}"))).await;
    let vlm = openai::build(config(&server.base_url), &ctx()).expect("build");
    let err = vlm.analyze(&clip(), &filter()).await.expect_err("401");
    assert!(!err.is_transient());
    let shown = format!("{err} {err:?} {vlm:?}");
    assert!(!shown.contains(KEY), "key leaked: {shown}");
    assert!(matches!(err, VlmError::Status { status: 401, .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_times_out_within_timeout_s() {
    let server = serve(Reply::Slow(Duration::from_secs(30), answer(json!(analysis_json("unknown"))))).await;
    let cfg = OpenAiConfig { timeout_s: 1.0, ..config(&server.base_url) };
    let vlm = openai::build(cfg, &ctx()).expect("build");
    let started = Instant::now();
    let err = vlm.analyze(&clip(), &filter()).await.expect_err("timeout");
    let done = Instant::now();
    assert!(done - started < Duration::from_secs(20), "took {:?}", done - started);
    let arrived = server.requests().first().map(|r| r.at).expect("request reached the server");
    let waited = done - arrived;
    assert!(waited <= Duration::from_millis(1500), "waited {waited:?} for a 1 s timeout");
    assert!(err.is_transient());
    match err {
        VlmError::Http { source, .. } => assert!(source.is_timeout(), "{source:?}"),
        other => panic!("expected Http timeout, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_clip_is_a_frames_error_and_no_request_is_made() {
    let server = serve(Reply::Json(answer(json!(analysis_json("unknown"))))).await;
    let vlm = openai::build(config(&server.base_url), &ctx()).expect("build");
    let mut c = clip();
    c.local_path = "/nonexistent/clip.mp4".into();
    let err = vlm.analyze(&c, &filter()).await.expect_err("no clip");
    assert!(matches!(err, VlmError::Frames { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(server.requests().is_empty());
}

#[test]
fn build_needs_the_key_when_api_key_env_is_set() {
    let cfg = OpenAiConfig {
        api_key_env: Some("HOMESEC_TEST_SURELY_UNSET_OPENAI_KEY".into()),
        ..OpenAiConfig::with_model("m")
    };
    let err = openai::build(cfg, &ctx()).expect_err("missing key");
    assert!(homesec::telemetry::chain(&err).contains("HOMESEC_TEST_SURELY_UNSET_OPENAI_KEY"));
}
