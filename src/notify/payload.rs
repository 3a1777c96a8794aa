//! The alert's JSON body, the same for every notifier that sends JSON (the MQTT
//! alert topic, the webhook's POST body).

use crate::domain::Alert;

/// The alert's JSON body (the serde form of [`Alert`]).
pub fn alert_payload(alert: &Alert) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(alert)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An alert as the pipeline makes one, for notifier tests.
    pub(crate) fn alert() -> Alert {
        Alert {
            clip_id: "front_1700000000".into(),
            camera_name: "front".into(),
            storage_uri: None,
            view_url: None,
            risk_level: None,
            activity_type: None,
            notify_reason: "notify_on_motion".into(),
            summary: None,
            ts: "2023-11-14T22:13:20.000Z".into(),
            dedupe_key: "front_1700000000".into(),
            upload_failed: true,
            detected_classes: vec!["person".into()],
            stage: crate::domain::AlertStage::Final,
            occurrences: 1,
            occurrences_text: None,
            snapshot_path: None,
        }
    }

    #[test]
    fn the_alert_payload_is_the_serde_form_of_alert() {
        let a = alert();
        let v: serde_json::Value = serde_json::from_slice(&alert_payload(&a).expect("json")).expect("parse");
        for key in crate::domain::ALERT_FIELDS {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let back: Alert = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, a);
    }
}
