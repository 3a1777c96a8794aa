//! The default alert policy: risk threshold and activity types from the VLM,
//! the classes that are a reason to alert (`FilterResult::alert_classes`:
//! moving objects, in a required zone) when there is no analysis, with
//! per-camera overrides.

use std::collections::HashMap;

use serde::Deserialize;

use super::AlertPolicy;
use crate::domain::{AlertDecision, AnalysisResult, CameraName, FilterResult, RiskLevel};
use crate::plugin::{PluginConfig, Validator};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultPolicyConfig {
    /// Alert when the VLM rates a clip at least this risky.
    pub min_risk_level: RiskLevel,
    /// Also alert for these VLM activity types, whatever the risk.
    pub notify_on_activity_types: Vec<String>,
    /// Without a VLM analysis (VLM off, skipped or down), alert when the filter
    /// saw one of these classes.
    pub notify_on_classes: Vec<String>,
    /// Alert on every clip, even when nothing was detected.
    pub notify_on_motion: bool,
    /// Live cameras: alert as soon as one of `notify_on_classes` is confirmed
    /// while the clip is still recording; the final alert follows with the same
    /// `dedupe_key`.
    pub early_alert: bool,
    /// Seconds an alert stays open after the last clip that updated it: a clip
    /// of the same camera and class inside the window updates the open alert
    /// (same `dedupe_key`, `occurrences` counted) instead of raising a new one.
    /// 0 turns this off.
    pub cooldown_s: u64,
    /// Per-camera changes to the keys above.
    pub overrides: HashMap<String, PolicyOverride>,
}

impl Default for DefaultPolicyConfig {
    fn default() -> Self {
        Self {
            min_risk_level: RiskLevel::Medium,
            notify_on_activity_types: Vec::new(),
            notify_on_classes: vec!["person".into()],
            notify_on_motion: false,
            early_alert: true,
            cooldown_s: 300,
            overrides: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyOverride {
    pub min_risk_level: Option<RiskLevel>,
    pub notify_on_activity_types: Option<Vec<String>>,
    pub notify_on_classes: Option<Vec<String>>,
    pub notify_on_motion: Option<bool>,
    pub early_alert: Option<bool>,
    pub cooldown_s: Option<u64>,
}

impl PluginConfig for DefaultPolicyConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        // A day: longer would keep one alert open for good on a busy camera.
        const MAX_COOLDOWN_S: u64 = 24 * 3600;
        let too_long = |s: u64| format!("{s} s is longer than a day ({MAX_COOLDOWN_S} s); 0 turns the cooldown off");
        if self.cooldown_s > MAX_COOLDOWN_S {
            v.error("cooldown_s", too_long(self.cooldown_s));
        }
        for (name, o) in &self.overrides {
            if let Some(s) = o.cooldown_s.filter(|s| *s > MAX_COOLDOWN_S) {
                v.error(&format!("overrides.{name}.cooldown_s"), too_long(s));
            }
        }
    }
}

impl DefaultPolicyConfig {
    /// Checks that overrides name configured cameras.
    pub fn check_cameras(&self, cameras: &[CameraName], v: &mut Validator<'_>) {
        for name in self.overrides.keys() {
            if !cameras.iter().any(|c| c.as_str() == name) {
                v.error(&format!("overrides.{name}"), format!("no camera named `{name}` is configured"));
            }
        }
    }
}

pub struct DefaultPolicy {
    cfg: DefaultPolicyConfig,
}

impl DefaultPolicy {
    pub fn new(cfg: DefaultPolicyConfig) -> Self {
        Self { cfg }
    }

    /// The camera's notify classes, and whether they come from its override.
    fn classes(&self, camera: &CameraName) -> (&[String], bool) {
        let o = self.cfg.overrides.get(camera.as_str());
        o.and_then(|o| o.notify_on_classes.as_deref()).map_or((&self.cfg.notify_on_classes, false), |c| (c, true))
    }
}

impl AlertPolicy for DefaultPolicy {
    fn early_alert(&self, camera: &CameraName, classes: &[String]) -> Option<String> {
        let o = self.cfg.overrides.get(camera.as_str());
        if !o.and_then(|o| o.early_alert).unwrap_or(self.cfg.early_alert) {
            return None;
        }
        let (wanted, from_override) = self.classes(camera);
        let class = classes.iter().find(|c| wanted.contains(c))?;
        Some(format!("detected={class} (early){}", if from_override { " (per-camera)" } else { "" }))
    }

    fn notify_classes(&self, camera: &CameraName) -> Vec<String> {
        self.classes(camera).0.to_vec()
    }

    fn cooldown_s(&self, camera: &CameraName) -> u64 {
        let o = self.cfg.overrides.get(camera.as_str());
        o.and_then(|o| o.cooldown_s).unwrap_or(self.cfg.cooldown_s)
    }

    fn decide(&self, camera: &CameraName, filter: &FilterResult, analysis: Option<&AnalysisResult>) -> AlertDecision {
        self.decide_with_min_risk(camera, filter, analysis, None)
    }

    fn decide_with_min_risk(
        &self,
        camera: &CameraName,
        filter: &FilterResult,
        analysis: Option<&AnalysisResult>,
        runtime_min_risk: Option<RiskLevel>,
    ) -> AlertDecision {
        let o = self.cfg.overrides.get(camera.as_str());
        let tag = |from_override: bool| if from_override { " (per-camera)" } else { "" };
        let min_risk = runtime_min_risk
            .or(o.and_then(|o| o.min_risk_level))
            .map_or((self.cfg.min_risk_level, false), |r| (r, true));
        let activities = o
            .and_then(|o| o.notify_on_activity_types.as_ref())
            .map_or((&self.cfg.notify_on_activity_types, false), |a| (a, true));
        let classes = self.classes(camera);
        let on_motion = o.and_then(|o| o.notify_on_motion).map_or((self.cfg.notify_on_motion, false), |m| (m, true));

        if let Some(a) = analysis {
            if a.risk_level >= min_risk.0 {
                return notify(format!("risk_level={}{}", a.risk_level, tag(min_risk.1)));
            }
            if activities.0.iter().any(|t| t == &a.activity_type) {
                return notify(format!("activity_type={}{}", a.activity_type, tag(activities.1)));
            }
        } else if let Some(class) = filter.alert_classes.iter().find(|c| classes.0.contains(c)) {
            return notify(format!("detected={class} (no VLM analysis){}", tag(classes.1)));
        }
        if on_motion.0 {
            return notify(format!("motion{}", tag(on_motion.1)));
        }
        let why = match analysis {
            Some(a) => format!("risk_level={} below {}", a.risk_level, min_risk.0),
            None if filter.detected_classes.is_empty() => "nothing detected".to_owned(),
            None => match not_a_reason(filter, classes.0) {
                Some(why) => format!("nothing to alert: {why}"),
                None => format!("detected {} (not an alert class)", filter.detected_classes.join(",")),
            },
        };
        AlertDecision { notify: false, reason: why }
    }
}

/// Why the notify classes the filter saw are no reason to alert, e.g.
/// `person stationary` or `person outside the zones`; `None` when it saw none.
fn not_a_reason(filter: &FilterResult, wanted: &[String]) -> Option<String> {
    let parts: Vec<String> = filter
        .detected_classes
        .iter()
        .filter(|c| wanted.contains(c))
        .map(|class| {
            let mut of_class = filter.detections.iter().filter(|d| &d.class == class).peekable();
            let moving = of_class.peek().is_some() && of_class.any(|d| !d.stationary);
            if moving { format!("{class} outside the zones") } else { format!("{class} stationary") }
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn notify(reason: String) -> AlertDecision {
    AlertDecision { notify: true, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Detection;

    fn filter(classes: &[&str]) -> FilterResult {
        let classes: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
        FilterResult { detected_classes: classes.clone(), alert_classes: classes, ..Default::default() }
    }

    fn analysis(risk: RiskLevel, activity: &str) -> AnalysisResult {
        AnalysisResult {
            risk_level: risk,
            activity_type: activity.into(),
            summary: "s".into(),
            entities_timeline: vec![],
            requires_review: false,
            model: "m".into(),
        }
    }

    fn policy(yaml: &str) -> DefaultPolicy {
        DefaultPolicy::new(serde_saphyr::from_str(yaml).unwrap())
    }

    #[test]
    fn risk_threshold_and_activity_types() {
        let p = policy("min_risk_level: medium\nnotify_on_activity_types: [delivery]\n");
        let cam = CameraName::from("front");
        let d = p.decide(&cam, &filter(&["person"]), Some(&analysis(RiskLevel::High, "unknown")));
        assert_eq!((d.notify, d.reason.as_str()), (true, "risk_level=high"));
        let d = p.decide(&cam, &filter(&["person"]), Some(&analysis(RiskLevel::Low, "delivery")));
        assert_eq!((d.notify, d.reason.as_str()), (true, "activity_type=delivery"));
        let d = p.decide(&cam, &filter(&["person"]), Some(&analysis(RiskLevel::Low, "person_passing")));
        assert!(!d.notify);
        assert_eq!(d.reason, "risk_level=low below medium");
    }

    #[test]
    fn per_camera_overrides_win() {
        let p = policy("min_risk_level: high\noverrides:\n  front:\n    min_risk_level: low\n");
        let a = analysis(RiskLevel::Low, "unknown");
        let d = p.decide(&"front".into(), &filter(&["person"]), Some(&a));
        assert_eq!((d.notify, d.reason.as_str()), (true, "risk_level=low (per-camera)"));
        assert!(!p.decide(&"back".into(), &filter(&["person"]), Some(&a)).notify);
    }

    #[test]
    fn a_minimum_risk_level_set_at_run_time_wins_over_the_config() {
        let p = policy("min_risk_level: low\noverrides:\n  front:\n    min_risk_level: low\n");
        let a = analysis(RiskLevel::Medium, "unknown");
        for cam in ["front", "back"] {
            let d = p.decide_with_min_risk(&cam.into(), &filter(&["person"]), Some(&a), Some(RiskLevel::High));
            assert_eq!((d.notify, d.reason.as_str()), (false, "risk_level=medium below high"), "{cam}");
            assert!(p.decide_with_min_risk(&cam.into(), &filter(&["person"]), Some(&a), None).notify, "{cam}");
        }
    }

    #[test]
    fn early_alerts_take_the_notify_classes_and_can_be_turned_off_per_camera() {
        let p = policy("notify_on_classes: [person, dog]\noverrides:\n  back:\n    early_alert: false\n");
        let front = CameraName::from("front");
        let seen = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(p.early_alert(&front, &seen(&["car", "dog"])).as_deref(), Some("detected=dog (early)"));
        assert_eq!(p.early_alert(&front, &seen(&["car"])), None, "not a notify class");
        assert_eq!(p.early_alert(&"back".into(), &seen(&["person"])), None, "off for this camera");
        assert_eq!(p.notify_classes(&front), seen(&["person", "dog"]));
        let p =
            policy("early_alert: false\noverrides:\n  front:\n    early_alert: true\n    notify_on_classes: [cat]\n");
        assert_eq!(p.early_alert(&front, &seen(&["cat"])).as_deref(), Some("detected=cat (early) (per-camera)"));
        assert_eq!(p.early_alert(&"back".into(), &seen(&["person"])), None);
        assert!(super::super::noop::NoopPolicy.early_alert(&front, &seen(&["person"])).is_none());
    }

    #[test]
    fn the_cooldown_defaults_to_five_minutes_per_camera_overrides_and_a_day_at_most() {
        let p = policy("overrides:\n  back:\n    cooldown_s: 0\n");
        assert_eq!(p.cooldown_s(&"front".into()), 300);
        assert_eq!(p.cooldown_s(&"back".into()), 0, "0 turns it off for this camera");
        let cfg: DefaultPolicyConfig =
            serde_saphyr::from_str("cooldown_s: 90000\noverrides:\n  back:\n    cooldown_s: 86401\n").unwrap();
        let (mut issues, locate) = (Vec::new(), |_: &str| None);
        cfg.validate(&mut Validator::new("alert_policy.config", &mut issues, &locate));
        let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].starts_with("alert_policy.config.cooldown_s: 90000 s is longer than a day"), "{text:?}");
        assert!(text[1].starts_with("alert_policy.config.overrides.back.cooldown_s: 86401 s"), "{text:?}");
    }

    #[test]
    fn without_analysis_detected_classes_decide() {
        let p = policy("{}");
        let cam = CameraName::from("front");
        let d = p.decide(&cam, &filter(&["car", "person"]), None);
        assert_eq!((d.notify, d.reason.as_str()), (true, "detected=person (no VLM analysis)"));
        assert!(!p.decide(&cam, &filter(&["car"]), None).notify);
        assert!(!p.decide(&cam, &filter(&[]), None).notify);
        let p = policy("notify_on_motion: true\n");
        assert_eq!(p.decide(&cam, &filter(&[]), None).reason, "motion");
    }

    #[test]
    fn a_person_that_is_no_reason_does_not_alert_and_the_decision_says_why() {
        let p = policy("{}");
        let cam = CameraName::from("front");
        let post = crate::domain::Detection { stationary: true, ..Detection::new("person", 0.5, [0.0; 4], 0.0) };
        let car = crate::domain::Detection { stationary: true, ..Detection::new("car", 0.8, [0.0; 4], 0.0) };
        let mut f = filter(&["car", "person"]);
        f.alert_classes.clear();
        f.detections = vec![car.clone(), post.clone()];
        let d = p.decide(&cam, &f, None);
        assert_eq!((d.notify, d.reason.as_str()), (false, "nothing to alert: person stationary"));
        // A moving person outside the required zones.
        f.detections = vec![car, Detection { stationary: false, zones: vec![], ..post }];
        assert_eq!(p.decide(&cam, &f, None).reason, "nothing to alert: person outside the zones");
        // A moving car is a reason, but not an alert class.
        let mut f = filter(&["car"]);
        f.detections = vec![Detection::new("car", 0.8, [0.0; 4], 0.0)];
        assert_eq!(p.decide(&cam, &f, None).reason, "detected car (not an alert class)");
    }
}
