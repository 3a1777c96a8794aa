//! A local HTTP stand-in for an external service (SendGrid, ntfy): every
//! request is recorded and judged by the test's `judge`, which answers as the
//! service would or names what is wrong with the request (a violation of the
//! service's documented API: the stand-in answers 400 and the test fails on
//! [`StandIn::assert_no_violations`]).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The status the stand-in answered.
    pub answered: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the judge says about a request.
pub enum Verdict {
    /// A valid request: answer with this status and body (which may be an
    /// error the real service would give, e.g. 401 for a wrong key).
    Answer(u16, String),
    /// The request breaks the service's API: why.
    Violation(String),
}

type Judge = dyn Fn(&Request) -> Verdict + Send + Sync;

pub struct StandIn {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    violations: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl StandIn {
    /// Listens on 127.0.0.1:`port` until dropped.
    pub fn start(port: u16, judge: impl Fn(&Request) -> Verdict + Send + Sync + 'static) -> StandIn {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let judge: Arc<Judge> = Arc::new(judge);
        let (recorded, broken) = (requests.clone(), violations.clone());
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let mut req = Request {
                method,
                path: uri.path().to_owned(),
                query: uri.query().map(str::to_owned),
                headers,
                body: body.to_vec(),
                answered: 0,
            };
            let (status, text) = match judge(&req) {
                Verdict::Answer(status, text) => (status, text),
                Verdict::Violation(why) => {
                    broken.lock().unwrap().push(format!("{} {}: {why}", req.method, req.path));
                    (400, format!("stand-in: {why}"))
                }
            };
            req.answered = status;
            recorded.lock().unwrap().push(req);
            async move { (StatusCode::from_u16(status).unwrap(), text) }
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))).unwrap();
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn { port, requests, violations, _rt: rt }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests the stand-in answered with `status`.
    pub fn answered(&self, status: u16) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.answered == status).collect()
    }

    pub fn assert_no_violations(&self) {
        let v = self.violations.lock().unwrap().clone();
        assert!(v.is_empty(), "requests that break the service's API:\n{}", v.join("\n"));
    }
}
