//! The alert as an email, one message for every mail notifier (`smtp`,
//! `sendgrid`): subject, plain text, HTML and the snapshot inline.
//!
//! # Early and final alerts
//! A live camera's early alert (`detected`) and the clip's final alert
//! (`analyzed` or `final`) share one `dedupe_key`; both are mailed. The
//! subjects differ so the two read as "seen now" and "what it was":
//! - `detected`: `HomeSec porch: person detected`;
//! - `analyzed`: `HomeSec porch: delivery, risk low` (the VLM's verdict);
//! - `final`: `HomeSec porch: person` (no analysis).
//!
//! The SMTP message also carries `Message-ID: <dedupe_key.stage@homesec>` and,
//! for a final alert, `In-Reply-To`/`References` to the early one, so mail
//! clients thread them (see [`thread_ids`]).

use crate::domain::{Alert, AlertStage};

/// The `Content-ID` of the inline snapshot; the HTML shows it as `cid:` this.
pub const SNAPSHOT_CID: &str = "snapshot@homesec";
/// The snapshot's file name in the message.
pub const SNAPSHOT_FILENAME: &str = "snapshot.jpg";

/// One alert as an email, before a transport shapes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The snapshot JPEG, shown inline by the HTML (`cid:` [`SNAPSHOT_CID`]).
    pub snapshot: Option<Vec<u8>>,
}

/// What the camera saw, in words: the detected classes, or `motion`.
fn seen(alert: &Alert) -> String {
    if alert.detected_classes.is_empty() { "motion".into() } else { alert.detected_classes.join(", ") }
}

/// The subject line (see the module docs for the three forms).
pub fn subject(alert: &Alert) -> String {
    let camera = &alert.camera_name;
    match alert.stage {
        AlertStage::Detected => format!("HomeSec {camera}: {} detected", seen(alert)),
        _ => {
            let what = alert.activity_type.clone().filter(|a| !a.trim().is_empty()).unwrap_or_else(|| seen(alert));
            match alert.risk_level {
                Some(risk) => format!("HomeSec {camera}: {what}, risk {risk}"),
                None => format!("HomeSec {camera}: {what}"),
            }
        }
    }
}

/// `view_url` when it is a web link a mail client can open.
fn view_link(alert: &Alert) -> Option<&str> {
    alert.view_url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://"))
}

/// The facts of the alert as (label, value) rows, in the order both parts show them.
fn rows(alert: &Alert) -> Vec<(&'static str, String)> {
    let mut rows = vec![("Camera", alert.camera_name.to_string()), ("Seen", seen(alert))];
    if let Some(risk) = alert.risk_level {
        rows.push(("Risk", risk.to_string()));
    }
    if let Some(activity) = alert.activity_type.as_deref().filter(|a| !a.trim().is_empty()) {
        rows.push(("Activity", activity.to_owned()));
    }
    rows.push(("Time", alert.ts.clone()));
    rows.push(("Clip", alert.clip_id.to_string()));
    rows.push(("Why", alert.notify_reason.clone()));
    rows
}

/// The lead sentence: the VLM's summary, or what the early alert knows.
fn lead(alert: &Alert) -> String {
    match (&alert.summary, alert.stage) {
        (Some(s), _) if !s.trim().is_empty() => s.trim().to_owned(),
        (_, AlertStage::Detected) => {
            format!("{} seen on camera {}; the clip is still being recorded.", seen(alert), alert.camera_name)
        }
        _ => format!("{} seen on camera {}.", seen(alert), alert.camera_name),
    }
}

/// The note when the clip could not be stored remotely (no link to watch it).
const UPLOAD_FAILED: &str = "The clip could not be uploaded yet; it is kept on the box.";

/// The plain-text part.
pub fn text(alert: &Alert) -> String {
    let mut out = format!("{}\n\n", lead(alert));
    for (label, value) in rows(alert) {
        out.push_str(&format!("{label}: {value}\n"));
    }
    if let Some(url) = view_link(alert) {
        out.push_str(&format!("\nWatch the clip: {url}\n"));
    }
    if alert.upload_failed {
        out.push_str(&format!("\n{UPLOAD_FAILED}\n"));
    }
    out
}

/// `s` with the five HTML special characters escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML part; shows the snapshot by `cid:` when there is one.
pub fn html(alert: &Alert, with_snapshot: bool) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html><body style=\"font-family:sans-serif\">\n");
    out.push_str(&format!("<p><strong>{}</strong></p>\n", escape(&lead(alert))));
    if with_snapshot {
        out.push_str(&format!(
            "<p><img src=\"cid:{SNAPSHOT_CID}\" alt=\"snapshot from {}\" style=\"max-width:100%\"></p>\n",
            escape(alert.camera_name.as_str())
        ));
    }
    out.push_str("<table>\n");
    for (label, value) in rows(alert) {
        out.push_str(&format!("<tr><th align=\"left\">{label}</th><td>{}</td></tr>\n", escape(&value)));
    }
    out.push_str("</table>\n");
    if let Some(url) = view_link(alert) {
        out.push_str(&format!("<p><a href=\"{}\">Watch the clip</a></p>\n", escape(url)));
    }
    if alert.upload_failed {
        out.push_str(&format!("<p>{UPLOAD_FAILED}</p>\n"));
    }
    out.push_str("</body></html>\n");
    out
}

/// The alert as an email.
pub fn compose(alert: &Alert, snapshot: Option<&[u8]>) -> Email {
    Email {
        subject: subject(alert),
        text: text(alert),
        html: html(alert, snapshot.is_some()),
        snapshot: snapshot.map(<[u8]>::to_vec),
    }
}

/// The alert's `Message-ID`, and the early alert's one it answers (for a final
/// alert), without angle brackets: `<dedupe_key>.<stage>@homesec`.
pub fn thread_ids(alert: &Alert) -> (String, Option<String>) {
    let key: String = alert
        .dedupe_key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect();
    let own = format!("{key}.{}@homesec", alert.stage.as_str());
    let parent = (alert.stage != AlertStage::Detected).then(|| format!("{key}.detected@homesec"));
    (own, parent)
}

/// Checks a mail notifier's `from` and `to` (at least one recipient), naming
/// each bad address by its path.
pub fn check_addresses(v: &mut crate::plugin::Validator<'_>, from: &str, to: &[String]) {
    if let Err(e) = check_address(from) {
        v.error("from", e);
    }
    if to.is_empty() {
        v.error("to", "must list at least one recipient");
    }
    for (i, to) in to.iter().enumerate() {
        if let Err(e) = check_address(to) {
            v.error(&format!("to[{i}]"), e);
        }
    }
}

/// An email address check good enough to catch typos in the config: one `@`,
/// something on both sides, no spaces or angle brackets.
pub fn check_address(addr: &str) -> Result<(), String> {
    let parsed: Result<lettre::Address, _> = addr.parse();
    parsed.map(drop).map_err(|e| format!("`{addr}` is not an email address ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RiskLevel;
    use crate::notify::payload::tests::alert;

    #[test]
    fn early_and_final_alerts_have_different_subjects() {
        let mut a = alert();
        a.stage = AlertStage::Detected;
        assert_eq!(subject(&a), "HomeSec front: person detected");
        a.stage = AlertStage::Final;
        assert_eq!(subject(&a), "HomeSec front: person");
        a.stage = AlertStage::Analyzed;
        a.risk_level = Some(RiskLevel::High);
        a.activity_type = Some("loitering".into());
        assert_eq!(subject(&a), "HomeSec front: loitering, risk high");
        a.detected_classes.clear();
        a.activity_type = None;
        assert_eq!(subject(&a), "HomeSec front: motion, risk high");
    }

    #[test]
    fn the_html_escapes_the_summary_and_links_the_clip() {
        let mut a = alert();
        a.summary = Some("A <script>alert(1)</script> & co".into());
        a.view_url = Some("https://clips.example.net/front/1?a=1&b=2".into());
        a.upload_failed = false;
        let email = compose(&a, Some(b"\xff\xd8jpeg"));
        assert!(email.html.contains("A &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"), "{}", email.html);
        assert!(email.html.contains("<a href=\"https://clips.example.net/front/1?a=1&amp;b=2\">"), "{}", email.html);
        assert!(email.html.contains("src=\"cid:snapshot@homesec\""), "{}", email.html);
        assert!(email.text.starts_with("A <script>alert(1)</script> & co\n"), "{}", email.text);
        assert!(email.text.contains("Watch the clip: https://clips.example.net/front/1?a=1&b=2"), "{}", email.text);
        assert!(email.text.contains("Camera: front\nSeen: person\n"), "{}", email.text);
        assert!(!email.text.contains(UPLOAD_FAILED));
    }

    #[test]
    fn no_snapshot_no_image_and_a_non_web_view_url_is_not_linked() {
        let mut a = alert();
        a.view_url = Some("file:///var/lib/homesec/front.mp4".into());
        let email = compose(&a, None);
        assert!(!email.html.contains("cid:"));
        assert!(!email.html.contains("<a href"));
        assert!(email.text.contains(UPLOAD_FAILED));
        assert_eq!(email.snapshot, None);
    }

    #[test]
    fn final_alerts_thread_under_the_early_one() {
        let mut a = alert();
        a.dedupe_key = "front 1700000000".into();
        assert_eq!(
            thread_ids(&a),
            ("front_1700000000.final@homesec".into(), Some("front_1700000000.detected@homesec".into()))
        );
        a.stage = AlertStage::Detected;
        assert_eq!(thread_ids(&a), ("front_1700000000.detected@homesec".into(), None));
    }

    #[test]
    fn addresses_are_checked() {
        assert!(check_address("alerts@example.net").is_ok());
        assert!(check_address("alerts.example.net").unwrap_err().contains("`alerts.example.net` is not an email"));
        assert!(check_address("a b@example.net").is_err());
    }
}
