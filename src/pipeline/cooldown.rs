//! The alert cooldown, as pure functions: whether a clip's alert is new,
//! updates the alert still open for its camera and class, or escalates it.
//!
//! An alert is open for (camera, class) from when it is raised until
//! `cooldown_s` after the last clip that updated it. A clip whose alert falls
//! in that window is sent with the open alert's `dedupe_key` and its count of
//! clips; one whose VLM risk is higher than the open alert's raises a new alert.

use chrono::TimeZone;

use crate::domain::{FilterResult, RiskLevel, UnixMillis};
use crate::store::OpenAlert;

/// The key of alerts without an alert-worthy class (decided by the VLM's risk
/// or activity, or by motion): one per camera.
pub const ANY_CLASS: &str = "*";

/// The classes that are a reason to alert in a clip.
pub fn alert_classes(filter: &FilterResult) -> &[String] {
    &filter.detected_classes
}

/// The classes a clip's alert is kept open for: of its alert-worthy classes
/// ([`alert_classes`], or those a live camera confirmed), those the camera
/// notifies on, most confident first; else [`ANY_CLASS`].
pub fn cooldown_classes(alert_classes: &[String], notify_classes: &[String]) -> Vec<String> {
    let classes: Vec<String> = alert_classes.iter().filter(|c| notify_classes.contains(c)).cloned().collect();
    if classes.is_empty() { vec![ANY_CLASS.to_owned()] } else { classes }
}

/// What the cooldown is asked about one clip's alert.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub clip_id: &'a str,
    /// From [`cooldown_classes`].
    pub classes: &'a [String],
    /// The VLM's risk, when the clip was analysed.
    pub risk: Option<RiskLevel>,
    pub now: UnixMillis,
    /// 0: no cooldown, every alert is new.
    pub cooldown_ms: i64,
    /// The clip raised its own alert already (its early alert): the final
    /// alert keeps the clip's own key.
    pub own: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new alert (or the final alert of a clip's own early alert): every notifier.
    New,
    /// An update of the open alert: only notifiers that take updates.
    Update,
    /// Riskier than the open alert: a new alert, to every notifier.
    Escalation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub kind: Kind,
    pub dedupe_key: String,
    /// Clips the alert covers, this one included.
    pub occurrences: u32,
    /// When the alert was raised.
    pub since_ms: UnixMillis,
    /// The open alert an escalation replaces.
    pub escalates: Option<String>,
}

impl Verdict {
    fn new(req: &Request<'_>, kind: Kind, escalates: Option<String>) -> Self {
        Verdict { kind, dedupe_key: req.clip_id.to_owned(), occurrences: 1, since_ms: req.now, escalates }
    }

    /// The clip's decision reason with what the cooldown made of it, e.g.
    /// `detected=person (update of alert front_1, 3 clips)`.
    pub fn reason(&self, reason: &str) -> String {
        match (self.kind, &self.escalates) {
            (Kind::Update, _) => format!("{reason} (update of alert {}, {} clips)", self.dedupe_key, self.occurrences),
            (Kind::Escalation, Some(old)) => format!("{reason} (escalation of alert {old})"),
            _ => reason.to_owned(),
        }
    }

    /// The count in words for the payload, e.g. `3 clips since 14:02` (the
    /// box's local time); none for an alert's first clip.
    pub fn text(&self) -> Option<String> {
        (self.occurrences > 1).then(|| {
            let since = chrono::Local.timestamp_millis_opt(self.since_ms).single().unwrap_or_default();
            format!("{} clips since {}", self.occurrences, since.format("%H:%M"))
        })
    }
}

/// Whether `alert` is still open at `now`.
pub fn is_open(alert: &OpenAlert, now: UnixMillis, cooldown_ms: i64) -> bool {
    cooldown_ms > 0 && now.saturating_sub(alert.last_ms) < cooldown_ms
}

/// The open alert that covers one of `classes` (in their order), if any: a live
/// camera's early alert for these classes is not sent while one is.
pub fn covering<'a>(
    alerts: &'a [OpenAlert],
    classes: &[String],
    now: UnixMillis,
    cooldown_ms: i64,
) -> Option<&'a OpenAlert> {
    classes.iter().find_map(|c| alerts.iter().find(|a| is_open(a, now, cooldown_ms) && a.classes.contains(c)))
}

/// Decides one clip's alert against the camera's open alerts; returns the
/// verdict and the camera's open alerts after it (closed ones dropped).
pub fn decide(alerts: &[OpenAlert], req: &Request<'_>) -> (Verdict, Vec<OpenAlert>) {
    if req.cooldown_ms <= 0 {
        return (Verdict::new(req, Kind::New, None), Vec::new());
    }
    let mut open: Vec<OpenAlert> = alerts.iter().filter(|a| is_open(a, req.now, req.cooldown_ms)).cloned().collect();
    let fresh = |classes: Vec<String>| OpenAlert {
        dedupe_key: req.clip_id.to_owned(),
        classes,
        first_ms: req.now,
        last_ms: req.now,
        occurrences: 1,
        risk: req.risk,
        last_clip: req.clip_id.into(),
    };

    // A clip decided again (a reanalysis) that raised an open alert is its own
    // alert's clip still; one that updated it last is not counted twice.
    if req.own || open.iter().any(|a| a.dedupe_key == req.clip_id) {
        if let Some(a) = open.iter_mut().find(|a| a.dedupe_key == req.clip_id) {
            a.last_ms = req.now;
            a.risk = a.risk.max(req.risk);
            let verdict =
                Verdict { occurrences: a.occurrences, since_ms: a.first_ms, ..Verdict::new(req, Kind::New, None) };
            return (verdict, open);
        }
        // Its window closed (or a riskier alert took its classes): it opens
        // again for the classes no other alert covers.
        let free: Vec<String> =
            req.classes.iter().filter(|c| !open.iter().any(|a| a.classes.contains(c))).cloned().collect();
        if !free.is_empty() {
            open.push(fresh(free));
        }
        return (Verdict::new(req, Kind::New, None), open);
    }

    let Some(at) = covering(&open, req.classes, req.now, req.cooldown_ms)
        .and_then(|hit| open.iter().position(|a| a.dedupe_key == hit.dedupe_key))
    else {
        take_classes(&mut open, req.classes);
        open.push(fresh(req.classes.to_vec()));
        return (Verdict::new(req, Kind::New, None), open);
    };

    let escalates = req.risk.is_some_and(|r| r > open[at].risk.unwrap_or(RiskLevel::Low));
    if escalates {
        let old = open.remove(at);
        let mut classes = old.classes;
        classes.extend(req.classes.iter().filter(|c| !classes.contains(c)).cloned().collect::<Vec<_>>());
        take_classes(&mut open, &classes);
        open.push(fresh(classes));
        return (Verdict::new(req, Kind::Escalation, Some(old.dedupe_key)), open);
    }

    let mut a = open.remove(at);
    if a.last_clip.as_str() != req.clip_id {
        a.occurrences += 1;
    }
    a.last_ms = req.now;
    a.risk = a.risk.max(req.risk);
    a.last_clip = req.clip_id.into();
    for c in req.classes {
        if !a.classes.contains(c) {
            a.classes.push(c.clone());
        }
    }
    take_classes(&mut open, &a.classes);
    let verdict = Verdict {
        kind: Kind::Update,
        dedupe_key: a.dedupe_key.clone(),
        occurrences: a.occurrences,
        since_ms: a.first_ms,
        escalates: None,
    };
    open.push(a);
    (verdict, open)
}

/// Takes `classes` away from the other open alerts (a class belongs to one
/// open alert); an alert left without classes goes.
fn take_classes(open: &mut Vec<OpenAlert>, classes: &[String]) {
    for a in open.iter_mut() {
        a.classes.retain(|c| !classes.contains(c));
    }
    open.retain(|a| !a.classes.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const COOLDOWN: i64 = 5 * MIN;

    fn classes(c: &[&str]) -> Vec<String> {
        c.iter().map(|c| c.to_string()).collect()
    }

    /// Runs clips through the cooldown in turn, as the pipeline does for one
    /// camera: (clip id, classes, risk, minute) → (kind, key, occurrences).
    fn run(clips: &[(&str, &[&str], Option<RiskLevel>, i64)], cooldown_ms: i64) -> Vec<(Kind, String, u32)> {
        let mut open = Vec::new();
        let mut out = Vec::new();
        for (id, c, risk, minute) in clips {
            let cs = classes(c);
            let req = Request { clip_id: id, classes: &cs, risk: *risk, now: minute * MIN, cooldown_ms, own: false };
            let (v, next) = decide(&open, &req);
            open = next;
            out.push((v.kind, v.dedupe_key, v.occurrences));
        }
        out
    }

    fn new(key: &str) -> (Kind, String, u32) {
        (Kind::New, key.into(), 1)
    }

    fn update(key: &str, n: u32) -> (Kind, String, u32) {
        (Kind::Update, key.into(), n)
    }

    #[test]
    fn a_continuing_presence_keeps_one_alert_as_the_window_slides() {
        let p: &[&str] = &["person"];
        // Every clip within 5 minutes of the previous one, 12 minutes in all.
        let clips = [("c1", p, None, 0), ("c2", p, None, 4), ("c3", p, None, 8), ("c4", p, None, 12)];
        assert_eq!(run(&clips, COOLDOWN), [new("c1"), update("c1", 2), update("c1", 3), update("c1", 4)]);
    }

    #[test]
    fn after_the_window_a_new_alert_is_raised() {
        let p: &[&str] = &["person"];
        let clips = [("c1", p, None, 0), ("c2", p, None, 3), ("c3", p, None, 8), ("c4", p, None, 9)];
        assert_eq!(run(&clips, COOLDOWN), [new("c1"), update("c1", 2), new("c3"), update("c3", 2)]);
        // Exactly the cooldown after the last update: closed.
        assert_eq!(run(&[("c1", p, None, 0), ("c2", p, None, 5)], COOLDOWN), [new("c1"), new("c2")]);
    }

    #[test]
    fn each_class_has_its_own_alert() {
        let (p, d, both): (&[&str], &[&str], &[&str]) = (&["person"], &["dog"], &["dog", "person"]);
        let clips = [("c1", p, None, 0), ("c2", d, None, 1), ("c3", p, None, 2), ("c4", both, None, 3)];
        // A clip with both updates the first class's alert, which then covers both.
        assert_eq!(run(&clips, COOLDOWN), [new("c1"), new("c2"), update("c1", 2), update("c2", 2)]);
        let clips = [("c1", p, None, 0), ("c2", d, None, 1), ("c3", both, None, 2), ("c4", p, None, 3)];
        let out = run(&clips, COOLDOWN);
        assert_eq!(out[2], update("c2", 2));
        assert_eq!(out[3], update("c2", 3), "the person moved to the alert that covers both");
    }

    #[test]
    fn each_camera_keeps_its_own_state() {
        // The pipeline keeps open alerts per camera: another camera's list is another call.
        let p = classes(&["person"]);
        let req = |id, now| Request { clip_id: id, classes: &p, risk: None, now, cooldown_ms: COOLDOWN, own: false };
        let (_, front) = decide(&[], &req("front_1", 0));
        let (v, _) = decide(&[], &req("back_1", MIN));
        assert_eq!((v.kind, v.dedupe_key.as_str()), (Kind::New, "back_1"));
        let (v, _) = decide(&front, &req("front_2", MIN));
        assert_eq!((v.kind, v.dedupe_key.as_str(), v.occurrences), (Kind::Update, "front_1", 2));
    }

    #[test]
    fn a_riskier_clip_escalates_to_a_new_alert_a_less_risky_one_updates() {
        let p: &[&str] = &["person"];
        let (low, high) = (Some(RiskLevel::Low), Some(RiskLevel::High));
        let clips = [("c1", p, low, 0), ("c2", p, None, 1), ("c3", p, high, 2), ("c4", p, low, 3), ("c5", p, high, 4)];
        let out = run(&clips, COOLDOWN);
        assert_eq!(out[..2], [new("c1"), update("c1", 2)]);
        assert_eq!(out[2], (Kind::Escalation, "c3".into(), 1));
        assert_eq!(out[3..], [update("c3", 2), update("c3", 3)], "not riskier than the escalated alert");
        let cs = classes(p);
        let (v, _) = decide(
            &[],
            &Request { clip_id: "c1", classes: &cs, risk: None, now: 0, cooldown_ms: COOLDOWN, own: false },
        );
        assert_eq!(v.reason("risk_level=high"), "risk_level=high");
        let esc = Verdict { kind: Kind::Escalation, escalates: Some("c1".into()), ..v };
        assert_eq!(esc.reason("risk_level=high"), "risk_level=high (escalation of alert c1)");
    }

    #[test]
    fn zero_turns_the_cooldown_off() {
        let p: &[&str] = &["person"];
        let clips = [("c1", p, None, 0), ("c2", p, None, 0), ("c3", p, None, 1)];
        assert_eq!(run(&clips, 0), [new("c1"), new("c2"), new("c3")]);
    }

    #[test]
    fn the_final_alert_of_a_clip_with_an_early_alert_keeps_its_own_key() {
        let p = classes(&["person"]);
        let req = |id, now, own| Request { clip_id: id, classes: &p, risk: None, now, cooldown_ms: COOLDOWN, own };
        // The early alert opens it; the same clip's final alert neither counts again nor moves the key.
        let (_, open) = decide(&[], &req("c1", 0, false));
        let (v, open) = decide(&open, &req("c1", MIN, true));
        assert_eq!((v.kind, v.dedupe_key.as_str(), v.occurrences), (Kind::New, "c1", 1));
        assert_eq!(open[0].last_ms, MIN, "the window slides from the final alert");
        assert!(covering(&open, &p, 5 * MIN, COOLDOWN).is_some(), "a later early alert is held back");
        assert!(covering(&open, &classes(&["dog"]), 5 * MIN, COOLDOWN).is_none());
        assert!(covering(&open, &p, 6 * MIN, COOLDOWN).is_none());
        // After the window closed the final alert still keeps its key, and opens it again.
        let (v, open) = decide(&open, &req("c1", 7 * MIN, true));
        assert_eq!((v.kind, v.dedupe_key.as_str()), (Kind::New, "c1"));
        assert_eq!(open.len(), 1);
    }

    #[test]
    fn a_clip_decided_again_is_not_counted_twice() {
        let p: &[&str] = &["person"];
        let clips = [("c1", p, None, 0), ("c2", p, None, 1), ("c2", p, None, 2), ("c1", p, None, 3)];
        let out = run(&clips, COOLDOWN);
        assert_eq!(out, [new("c1"), update("c1", 2), update("c1", 2), (Kind::New, "c1".into(), 2)]);
    }

    #[test]
    fn the_reason_and_text_tell_what_the_update_covers() {
        let v =
            Verdict { kind: Kind::Update, dedupe_key: "front_1".into(), occurrences: 3, since_ms: 0, escalates: None };
        assert_eq!(v.reason("detected=person"), "detected=person (update of alert front_1, 3 clips)");
        let since = chrono::Local.timestamp_millis_opt(0).unwrap().format("%H:%M").to_string();
        assert_eq!(v.text(), Some(format!("3 clips since {since}")));
        assert_eq!(Verdict { occurrences: 1, ..v }.text(), None);
    }

    #[test]
    fn classes_come_from_the_notify_classes_else_one_key_per_camera() {
        let f = FilterResult { detected_classes: classes(&["car", "dog", "person"]), ..Default::default() };
        let of = |f: &FilterResult, notify: &[&str]| cooldown_classes(alert_classes(f), &classes(notify));
        assert_eq!(of(&f, &["person", "dog"]), ["dog", "person"]);
        assert_eq!(of(&f, &["cat"]), [ANY_CLASS]);
        assert_eq!(of(&FilterResult::default(), &["person"]), [ANY_CLASS]);
    }
}
