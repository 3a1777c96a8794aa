//! The status page: server-rendered HTML (minijinja, templates embedded in the
//! binary), a little embedded CSS and JS, on the API's port.
//!
//! Access: with no API key configured (`server.api_key_env` unset) the page is
//! open to the box itself only (127.0.0.1 / ::1); other addresses get a page
//! saying to configure the key. With a key, a login form takes it and gives a
//! session cookie (HttpOnly, SameSite=Strict). Every state-changing request
//! (logout, re-analyse) needs the session and its CSRF token.

mod media;
mod pages;
pub mod redact;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::api::AppState;
use session::Sessions;

/// What the page's handlers share.
pub struct WebState {
    app: Arc<AppState>,
    sessions: Mutex<Sessions>,
    throttle: Mutex<session::LoginThrottle>,
    templates: Environment<'static>,
    /// The config file, secrets hidden (see [`redact`]).
    config_yaml: String,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("refused.html", include_str!("templates/refused.html")),
    ("cameras.html", include_str!("templates/cameras.html")),
    ("events.html", include_str!("templates/events.html")),
    ("clip.html", include_str!("templates/clip.html")),
    ("system.html", include_str!("templates/system.html")),
    ("error.html", include_str!("templates/error.html")),
];

const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/app.js");

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("template {name} does not compile")]
    Template {
        name: &'static str,
        #[source]
        source: minijinja::Error,
    },
}

fn templates() -> Result<Environment<'static>, WebError> {
    let mut env = Environment::new();
    for (name, text) in TEMPLATES {
        env.add_template(name, text).map_err(|source| WebError::Template { name, source })?;
    }
    env.add_filter("when", pages::when);
    env.add_filter("bytes", pages::bytes);
    Ok(env)
}

/// The page's routes, to merge with the API's. `config_text` is the config
/// file as read (shown redacted on the System page).
pub fn router(app: Arc<AppState>, config_text: &str) -> Result<Router, WebError> {
    let state = Arc::new(WebState {
        app,
        sessions: Mutex::new(Sessions::default()),
        throttle: Mutex::new(session::LoginThrottle::default()),
        templates: templates()?,
        config_yaml: redact::config_yaml(config_text),
    });
    Ok(Router::new()
        .route("/", get(pages::cameras))
        .route("/events", get(pages::events))
        .route("/clips/{id}", get(pages::clip))
        .route("/clips/{id}/video.mp4", get(media::video))
        .route("/clips/{id}/snapshot.jpg", get(media::snapshot))
        .route("/clips/{id}/reanalyze", post(pages::reanalyze))
        .route("/cameras/{name}/picture.jpg", get(media::camera_picture))
        .route("/system", get(pages::system))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/static/app.css", get(|| async { static_file("text/css; charset=utf-8", CSS) }))
        .route("/static/app.js", get(|| async { static_file("text/javascript; charset=utf-8", JS) }))
        .with_state(state))
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

/// Who may see the page, from the API key setting and the peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// No key configured and the request comes from the box itself.
    Open,
    /// No key configured and the request comes from elsewhere.
    Refuse,
    /// A key is configured: log in with it.
    Login,
}

pub fn gate(key_configured: bool, peer: Option<IpAddr>) -> Gate {
    if key_configured {
        Gate::Login
    } else if peer.is_some_and(|ip| ip.to_canonical().is_loopback()) {
        Gate::Open
    } else {
        Gate::Refuse
    }
}

/// A request the page lets through: its session and CSRF token, and the
/// cookie to set when the session was opened by this request (open mode).
#[derive(Debug, Clone)]
pub struct Viewer {
    token: String,
    csrf: String,
    set_cookie: Option<String>,
}

impl WebState {
    fn now(&self) -> std::time::Duration {
        self.app.pipeline.clock().monotonic()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // The map holds no invariant a panicking holder could break halfway.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_session(&self) -> Result<(String, String), Box<Response>> {
        let (token, csrf) = match (session::random_token(), session::random_token()) {
            (Ok(t), Ok(c)) => (t, c),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, stage = "web", "cannot open a session");
                return Err(Box::new(self.error(StatusCode::INTERNAL_SERVER_ERROR, "cannot open a session")));
            }
        };
        self.sessions().open(token.clone(), csrf.clone(), self.now());
        Ok((token, csrf))
    }

    /// A page from `name` with `ctx`, for `viewer`.
    fn render(&self, viewer: Option<&Viewer>, code: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        let base = minijinja::context! {
            csrf => viewer.map(|v| v.csrf.clone()),
            logged_in => viewer.is_some() && self.app.api_key.is_some(),
            device_id => self.app.device_id.clone(),
            version => env!("CARGO_PKG_VERSION"),
        };
        let ctx = minijinja::context! { ..ctx, ..base };
        let html = self.templates.get_template(name).and_then(|t| t.render(ctx));
        let mut response = match html {
            Ok(html) => (code, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), template = name, stage = "web", "page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render; see the daemon's log").into_response()
            }
        };
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; \
                 frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        );
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if let Some(c) = viewer.and_then(|v| v.set_cookie.as_deref()).and_then(|c| HeaderValue::from_str(c).ok()) {
            h.insert(header::SET_COOKIE, c);
        }
        response
    }

    fn error(&self, code: StatusCode, message: &str) -> Response {
        self.render(None, code, "error.html", minijinja::context! { code => code.as_u16(), message })
    }
}

impl FromRequestParts<Arc<WebState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<WebState>) -> Result<Self, Response> {
        let cookies = parts.headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if let Some(token) = session::token_in(cookies) {
            let csrf = state.sessions().csrf(token, state.now());
            if let Some(csrf) = csrf {
                return Ok(Viewer { token: token.to_owned(), csrf, set_cookie: None });
            }
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        match gate(state.app.api_key.is_some(), peer) {
            Gate::Open => {
                let (token, csrf) = state.open_session().map_err(|r| *r)?;
                let set_cookie = Some(session::set_cookie(&token));
                Ok(Viewer { token, csrf, set_cookie })
            }
            Gate::Refuse => Err(state.render(None, StatusCode::FORBIDDEN, "refused.html", minijinja::context! {})),
            Gate::Login => Err(if parts.method == axum::http::Method::GET {
                Redirect::to("/login").into_response()
            } else {
                state.error(StatusCode::UNAUTHORIZED, "log in first")
            }),
        }
    }
}

/// The CSRF token a state-changing form sends.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

impl Viewer {
    /// Refuses a state-changing request whose CSRF token is not the session's.
    fn check(&self, state: &WebState, form: &CsrfForm) -> Result<(), Box<Response>> {
        if state.sessions().check_csrf(&self.token, &form.csrf, state.now()) {
            Ok(())
        } else {
            Err(Box::new(
                state.error(StatusCode::FORBIDDEN, "missing or wrong CSRF token: reload the page and try again"),
            ))
        }
    }
}

async fn login_form(State(state): State<Arc<WebState>>) -> Response {
    if state.app.api_key.is_none() {
        return Redirect::to("/").into_response();
    }
    state.render(None, StatusCode::OK, "login.html", minijinja::context! {})
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    key: String,
}

async fn login(
    State(state): State<Arc<WebState>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(key) = &state.app.api_key else {
        return Redirect::to("/").into_response();
    };
    let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.0.ip());
    let now = state.now();
    let throttle = || state.throttle.lock().unwrap_or_else(PoisonError::into_inner);
    if !throttle().allows(ip, now) {
        return state.render(
            None,
            StatusCode::TOO_MANY_REQUESTS,
            "login.html",
            minijinja::context! { problem => "Too many wrong keys from this address: wait a minute." },
        );
    }
    if !bool::from(form.key.as_bytes().ct_eq(key.as_bytes())) {
        throttle().failed(ip, now);
        tracing::warn!(stage = "web", peer = %ip, "status page login with a wrong key");
        return state.render(
            None,
            StatusCode::UNAUTHORIZED,
            "login.html",
            minijinja::context! { problem => "That is not the API key." },
        );
    }
    throttle().succeeded(ip);
    let (token, _) = match state.open_session() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut response = Redirect::to("/").into_response();
    if let Ok(c) = HeaderValue::from_str(&session::set_cookie(&token)) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}

async fn logout(State(state): State<Arc<WebState>>, viewer: Viewer, Form(form): Form<CsrfForm>) -> Response {
    if let Err(r) = viewer.check(&state, &form) {
        return *r;
    }
    state.sessions().close(&viewer.token);
    let mut response = Redirect::to(if state.app.api_key.is_some() { "/login" } else { "/" }).into_response();
    if let Ok(c) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_key_only_the_box_itself_gets_in() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(gate(false, ip("127.0.0.1")), Gate::Open);
        assert_eq!(gate(false, ip("::1")), Gate::Open);
        assert_eq!(gate(false, ip("::ffff:127.0.0.1")), Gate::Open);
        assert_eq!(gate(false, ip("192.168.1.20")), Gate::Refuse);
        assert_eq!(gate(false, None), Gate::Refuse, "unknown peer");
        assert_eq!(gate(true, ip("127.0.0.1")), Gate::Login, "a key means a login, even locally");
    }

    #[test]
    fn every_template_compiles() {
        templates().unwrap();
    }
}
