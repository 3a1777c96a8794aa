//! The `rtsp` source's config block, and turning it into URLs and credentials.
//!
//! Secrets never sit in the YAML: either `rtsp_url_env` names an environment
//! variable holding the whole URL (credentials included), or `url` holds a URL
//! without credentials and `username_env` / `password_env` name the variables
//! holding them. The same for the optional detection sub-stream
//! (`detect_url_env` / `detect_url`), which uses the main stream's credentials
//! unless its URL carries its own.

use serde::Deserialize;
use url::Url;

use crate::media::motion::MotionConfig;
use crate::plugin::{PluginConfig, Validator};
use crate::sources::recorder::RecordingConfig;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// RTP interleaved in the RTSP TCP connection: works through NAT and loses nothing.
    #[default]
    Tcp,
    /// RTP over UDP (LAN only: no reordering, lost packets stay lost).
    Udp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtspConfig {
    /// Environment variable holding the main stream's whole URL, credentials included.
    #[serde(default)]
    pub rtsp_url_env: Option<String>,
    /// The main stream's URL without credentials (alternative to `rtsp_url_env`).
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variables holding the user name and password (with `url`, or
    /// to override the ones in `rtsp_url_env`'s URL).
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// Optional low-resolution sub-stream decoded for motion detection, as an
    /// environment variable holding the URL or as a URL without credentials.
    #[serde(default)]
    pub detect_url_env: Option<String>,
    #[serde(default)]
    pub detect_url: Option<String>,
    #[serde(default)]
    pub transport: RtspTransport,
    /// How many frames per second the motion detector looks at.
    #[serde(default = "default_detect_fps")]
    pub detect_fps: f64,
    /// While the picture is still, decode only the detect stream's keyframes
    /// (one picture per GOP instead of every reference frame): much less CPU
    /// per idle camera, but motion is noticed up to one GOP later (the
    /// camera's keyframe interval, often 1-4 s). Off by default.
    #[serde(default)]
    pub keyframes_when_idle: bool,
    /// Frames per second the object detector looks at while motion is on (and
    /// for a short hold after); 0 turns live detection off (clips are then
    /// filtered from the file).
    #[serde(default = "crate::sources::live::default_object_fps")]
    pub object_fps: f64,
    #[serde(default)]
    pub motion: MotionConfig,
    #[serde(default)]
    pub recording: RecordingConfig,
    /// A stream that delivers no frame for this long is restarted.
    #[serde(default = "default_frame_timeout")]
    pub frame_timeout_s: f64,
    /// Deadline from connecting to the first frame.
    #[serde(default = "default_first_frame_timeout")]
    pub first_frame_timeout_s: f64,
    /// Reconnect backoff for set-ups that fail while the camera answers: first
    /// delay, doubled per failure up to `reconnect_max_s` (with ±20 % jitter).
    /// Wrong credentials and unknown paths wait `reconnect_max_s`.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_s: f64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_s: f64,
    /// While a stream is down the camera is probed this often (a TCP connection
    /// and an RTSP OPTIONS request); when it answers again after not answering,
    /// the stream is set up at once, whatever the backoff says.
    #[serde(default = "default_probe_interval")]
    pub probe_interval_s: f64,
}

fn default_detect_fps() -> f64 {
    5.0
}
fn default_frame_timeout() -> f64 {
    10.0
}
fn default_first_frame_timeout() -> f64 {
    20.0
}
fn default_reconnect_initial() -> f64 {
    1.0
}
fn default_reconnect_max() -> f64 {
    60.0
}
fn default_probe_interval() -> f64 {
    1.0
}

/// A stream's URL without credentials, the credentials, and a loggable form.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamUrl {
    pub url: Url,
    pub credentials: Option<retina::client::Credentials>,
    /// The URL as it may appear in logs, errors and the API (no credentials).
    pub display: String,
}

impl std::fmt::Debug for StreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamUrl")
            .field("url", &self.display)
            .field("credentials", &self.credentials.as_ref().map(|_| "***"))
            .finish()
    }
}

impl StreamUrl {
    /// The password, for scrubbing it out of any text that leaves the source.
    pub fn secret(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.password.as_str()).filter(|p| !p.is_empty())
    }
}

/// Both streams of a camera, resolved.
#[derive(Debug, Clone)]
pub struct ResolvedUrls {
    pub main: StreamUrl,
    pub detect: Option<StreamUrl>,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = ((bytes[i + 1] as char).to_digit(16), (bytes[i + 2] as char).to_digit(16))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses an RTSP URL and splits the credentials off.
fn parse_url(raw: &str) -> Result<StreamUrl, String> {
    let mut url = Url::parse(raw.trim()).map_err(|e| format!("not a valid URL ({e})"))?;
    if url.scheme() != "rtsp" {
        return Err(format!("scheme must be rtsp://, not {}://", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    let credentials = (!url.username().is_empty() || url.password().is_some()).then(|| retina::client::Credentials {
        username: percent_decode(url.username()),
        password: percent_decode(url.password().unwrap_or("")),
    });
    // Cannot fail for a URL with a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let display = url.to_string();
    Ok(StreamUrl { url, credentials, display })
}

fn env_value(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        Ok(_) => Err(format!("environment variable {name} is empty")),
        Err(_) => Err(format!("environment variable {name} is not set")),
    }
}

/// Problems are reported as (field, message).
type Problem = (&'static str, String);

impl RtspConfig {
    fn env_credentials(&self) -> Result<Option<retina::client::Credentials>, Problem> {
        let username = match &self.username_env {
            Some(n) => Some(env_value(n).map_err(|m| ("username_env", m))?),
            None => None,
        };
        let password = match &self.password_env {
            Some(n) => Some(env_value(n).map_err(|m| ("password_env", m))?),
            None => None,
        };
        match (username, password) {
            (Some(username), password) => {
                Ok(Some(retina::client::Credentials { username, password: password.unwrap_or_default() }))
            }
            (None, Some(_)) => Err(("username_env", "password_env needs username_env too".into())),
            (None, None) => Ok(None),
        }
    }

    /// One stream's URL from `<env field>` or `<plain field>`: exactly one for the
    /// main stream, at most one for the detection stream.
    fn stream_url(
        env: Option<&String>,
        plain: Option<&String>,
        env_field: &'static str,
        plain_field: &'static str,
    ) -> Result<Option<StreamUrl>, Problem> {
        match (env, plain) {
            (Some(_), Some(_)) => Err((plain_field, format!("give either {env_field} or {plain_field}, not both"))),
            (Some(name), None) => {
                let raw = env_value(name).map_err(|m| (env_field, m))?;
                // The message must not echo the URL: it may hold the password.
                parse_url(&raw).map(Some).map_err(|m| (env_field, format!("the URL in {name}: {m}")))
            }
            (None, Some(raw)) => {
                let u = parse_url(raw).map_err(|m| (plain_field, m))?;
                if u.credentials.is_some() {
                    return Err((
                        plain_field,
                        "must not contain credentials: use username_env/password_env, or put the whole URL in an \
                         environment variable named by the env variant of this key"
                            .into(),
                    ));
                }
                Ok(Some(u))
            }
            (None, None) => Ok(None),
        }
    }

    /// Resolves both streams' URLs and credentials from the config and the environment.
    pub fn resolve(&self) -> Result<ResolvedUrls, Vec<Problem>> {
        let mut problems = Vec::new();
        let env_creds = self.env_credentials().map_err(|p| problems.push(p)).ok().flatten();
        let main = match Self::stream_url(self.rtsp_url_env.as_ref(), self.url.as_ref(), "rtsp_url_env", "url") {
            Ok(Some(u)) => Some(u),
            Ok(None) => {
                problems.push(("url", "give the stream as rtsp_url_env (a variable with the whole URL) or url".into()));
                None
            }
            Err(p) => {
                problems.push(p);
                None
            }
        };
        let detect =
            Self::stream_url(self.detect_url_env.as_ref(), self.detect_url.as_ref(), "detect_url_env", "detect_url")
                .map_err(|p| problems.push(p))
                .ok()
                .flatten();
        let Some(mut main) = main else { return Err(problems) };
        if !problems.is_empty() {
            return Err(problems);
        }
        if env_creds.is_some() {
            main.credentials = env_creds;
        }
        let detect = detect.map(|mut d| {
            if d.credentials.is_none() {
                d.credentials = main.credentials.clone();
            }
            d
        });
        Ok(ResolvedUrls { main, detect })
    }
}

impl PluginConfig for RtspConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Err(problems) = self.resolve() {
            for (field, message) in problems {
                v.error(field, message);
            }
        }
        let ok = |x: f64, lo: f64, hi: f64| x.is_finite() && x >= lo && x <= hi;
        v.check(
            self.detect_fps.is_finite() && self.detect_fps > 0.0 && self.detect_fps <= 60.0,
            "detect_fps",
            "must be in (0, 60]",
        );
        crate::sources::live::check_object_fps(self.object_fps, self.detect_fps, v);
        v.check(ok(self.frame_timeout_s, 1.0, 300.0), "frame_timeout_s", "must be in [1, 300]");
        v.check(ok(self.first_frame_timeout_s, 1.0, 600.0), "first_frame_timeout_s", "must be in [1, 600]");
        v.check(ok(self.reconnect_initial_s, 0.1, 600.0), "reconnect_initial_s", "must be in [0.1, 600]");
        v.check(
            ok(self.reconnect_max_s, 0.1, 3600.0) && self.reconnect_max_s >= self.reconnect_initial_s,
            "reconnect_max_s",
            "must be in [reconnect_initial_s, 3600]",
        );
        v.check(
            ok(self.probe_interval_s, 0.2, 10.0),
            "probe_interval_s",
            "must be in [0.2, 10] seconds: how often a camera that is down is probed (video resumes within about \
             this long of the camera answering again)",
        );
        self.motion.validate(&mut v.nested("motion"));
        self.recording.validate(&mut v.nested("recording"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::ConfigIssue;

    fn issues(cfg: &serde_json::Value) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let locate = |_: &str| None;
        let mut v = Validator::new("cameras[0].source.config", &mut issues, &locate);
        if let Some(c) = v.parse::<RtspConfig>(cfg) {
            c.validate(&mut v);
        }
        issues
    }

    #[test]
    fn credentials_come_out_of_the_url_and_never_show() {
        let u = parse_url("rtsp://admin:p%40ss@10.0.0.2:554/Streaming/Channels/101").unwrap();
        assert_eq!(u.display, "rtsp://10.0.0.2:554/Streaming/Channels/101");
        assert_eq!(u.url.as_str(), "rtsp://10.0.0.2:554/Streaming/Channels/101");
        let c = u.credentials.as_ref().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("admin", "p@ss"));
        assert!(!format!("{u:?}").contains("p@ss"));
        assert!(parse_url("http://x/y").is_err());
    }

    #[test]
    fn defaults_and_env_resolution() {
        // SAFETY (test-only): unique variable names, set before use.
        unsafe {
            std::env::set_var("HOMESEC_TEST_RTSP_URL_A", "rtsp://u:secretpw@cam/main");
            std::env::set_var("HOMESEC_TEST_RTSP_USER_A", "viewer");
            std::env::set_var("HOMESEC_TEST_RTSP_PASS_A", "pw2");
        }
        let cfg: RtspConfig = serde_json::from_value(serde_json::json!({
            "rtsp_url_env": "HOMESEC_TEST_RTSP_URL_A", "detect_url": "rtsp://cam/sub"
        }))
        .unwrap();
        assert_eq!(cfg.transport, RtspTransport::Tcp);
        assert_eq!((cfg.detect_fps, cfg.frame_timeout_s, cfg.first_frame_timeout_s), (5.0, 10.0, 20.0));
        assert_eq!((cfg.reconnect_initial_s, cfg.reconnect_max_s, cfg.probe_interval_s), (1.0, 60.0, 1.0));
        assert_eq!(cfg.recording, RecordingConfig::default());
        let r = cfg.resolve().unwrap();
        assert_eq!(r.main.display, "rtsp://cam/main");
        assert_eq!(r.detect.as_ref().unwrap().credentials.as_ref().unwrap().password, "secretpw");

        let cfg: RtspConfig = serde_json::from_value(serde_json::json!({
            "url": "rtsp://cam/main", "username_env": "HOMESEC_TEST_RTSP_USER_A",
            "password_env": "HOMESEC_TEST_RTSP_PASS_A", "transport": "udp"
        }))
        .unwrap();
        let r = cfg.resolve().unwrap();
        assert_eq!(r.main.credentials.unwrap().username, "viewer");
        assert_eq!(cfg.transport, RtspTransport::Udp);
        assert!(issues(&serde_json::json!({"url": "rtsp://cam/main"})).is_empty());
    }

    #[test]
    fn every_problem_is_reported_without_secrets() {
        unsafe {
            std::env::set_var("HOMESEC_TEST_RTSP_URL_B", "http://u:hunter2@cam/x");
        }
        let found = issues(&serde_json::json!({
            "rtsp_url_env": "HOMESEC_TEST_RTSP_URL_B",
            "detect_url": "rtsp://a:b@cam/sub",
            "username_env": "HOMESEC_TEST_RTSP_UNSET_B",
            "detect_fps": 0,
            "frame_timeout_s": 0.5,
            "reconnect_initial_s": 5, "reconnect_max_s": 2,
            "probe_interval_s": 0.05,
            "recording": {"pre_roll_s": 100},
            "motion": {"threshold": 0}
        }));
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        let joined = text.join("\n");
        for field in [
            "rtsp_url_env",
            "detect_url",
            "username_env",
            "detect_fps",
            "frame_timeout_s",
            "reconnect_max_s",
            "probe_interval_s",
            "recording.pre_roll_s",
            "motion.threshold",
        ] {
            assert!(joined.contains(&format!("config.{field}")), "{field} missing in:\n{joined}");
        }
        assert!(!joined.contains("hunter2"), "{joined}");
        let missing = issues(&serde_json::json!({}));
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(issues(&serde_json::json!({"url": "rtsp://cam/x", "bogus": 1}))[0].message.contains("bogus"));
    }

    #[test]
    fn object_fps_is_off_or_at_most_detect_fps() {
        let at = |object_fps: f64| {
            issues(&serde_json::json!({"url": "rtsp://cam/x", "detect_fps": 5, "object_fps": object_fps}))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert!(at(0.0).is_empty() && at(2.0).is_empty() && at(5.0).is_empty());
        let too_fast = at(6.0);
        assert!(
            too_fast.len() == 1 && too_fast[0].contains("object_fps: must not exceed detect_fps (5)"),
            "{too_fast:?}"
        );
        assert!(at(-1.0)[0].contains("0 turns live object detection off"));
        let cfg: RtspConfig = serde_json::from_value(serde_json::json!({"url": "rtsp://cam/x"})).unwrap();
        assert_eq!(cfg.object_fps, 2.0);
    }
}
