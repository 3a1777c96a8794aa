//! Open alerts (the cooldown): per camera, the alerts a continuing presence
//! keeps updating instead of raising new ones. Written with the outbox entries
//! of the alert that changes them; closed ones go when the camera's next alert
//! is decided and when the daemon starts, so the table stays bounded.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

use super::codec::{Stored, decode, encode};
use super::{Store, StoreError, Writer};
use crate::domain::{ClipId, RiskLevel, UnixMillis};

/// Camera name → its open alerts ([`OpenAlerts`]).
pub(super) const OPEN_ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("open_alerts");

/// One alert kept open for some classes of one camera.
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct OpenAlert {
    /// The `dedupe_key` its updates carry (the clip id of the clip that raised it).
    pub dedupe_key: String,
    /// The alert-worthy classes it covers (`*`: alerts without one).
    pub classes: Vec<String>,
    /// When it was raised.
    pub first_ms: UnixMillis,
    /// When the last clip updated it: it stays open for the cooldown after this.
    pub last_ms: UnixMillis,
    /// Clips it covers so far.
    pub occurrences: u32,
    /// The highest VLM risk it was sent with (none without analysis).
    pub risk: Option<RiskLevel>,
    pub last_clip: ClipId,
}

/// The value kept per camera.
#[derive(Clone, Debug, Default, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct OpenAlerts {
    pub alerts: Vec<OpenAlert>,
}

impl Stored for OpenAlerts {
    const VERSION: u16 = 1;
}

impl Store {
    /// A camera's open alerts, as last written (closed ones may still be there).
    pub fn open_alerts(&self, camera: &str) -> Result<Vec<OpenAlert>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OPEN_ALERTS)?;
        let value = table.get(camera)?.map(|v| decode::<OpenAlerts>(&format!("open alerts of {camera}"), v.value()));
        Ok(value.transpose()?.unwrap_or_default().alerts)
    }
}

impl Writer<'_> {
    /// A camera's open alerts, as last written.
    pub fn open_alerts(&self, camera: &str) -> Result<Vec<OpenAlert>, StoreError> {
        let table = self.txn.open_table(OPEN_ALERTS)?;
        let value = table.get(camera)?.map(|v| decode::<OpenAlerts>(&format!("open alerts of {camera}"), v.value()));
        Ok(value.transpose()?.unwrap_or_default().alerts)
    }

    /// Replaces a camera's open alerts (none: the camera's entry goes).
    pub fn put_open_alerts(&mut self, camera: &str, alerts: Vec<OpenAlert>) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(OPEN_ALERTS)?;
        if alerts.is_empty() {
            table.remove(camera)?;
        } else {
            table.insert(camera, encode(&OpenAlerts { alerts })?.as_slice())?;
        }
        Ok(())
    }

    /// Drops every alert `still_open(camera, alert)` says is closed; returns how many went.
    pub fn forget_closed_alerts(&mut self, still_open: impl Fn(&str, &OpenAlert) -> bool) -> Result<usize, StoreError> {
        let mut changed = Vec::new();
        let mut gone = 0;
        {
            let table = self.txn.open_table(OPEN_ALERTS)?;
            for row in table.iter()? {
                let (k, v) = row?;
                let camera = k.value().to_owned();
                let alerts = decode::<OpenAlerts>(&format!("open alerts of {camera}"), v.value())?.alerts;
                let before = alerts.len();
                let kept: Vec<_> = alerts.into_iter().filter(|a| still_open(&camera, a)).collect();
                if kept.len() < before {
                    gone += before - kept.len();
                    changed.push((camera, kept));
                }
            }
        }
        for (camera, kept) in changed {
            self.put_open_alerts(&camera, kept)?;
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(key: &str, last_ms: UnixMillis) -> OpenAlert {
        OpenAlert {
            dedupe_key: key.into(),
            classes: vec!["person".into()],
            first_ms: 0,
            last_ms,
            occurrences: 2,
            risk: Some(RiskLevel::Low),
            last_clip: ClipId(key.into()),
        }
    }

    #[test]
    fn open_alerts_survive_reopening_and_closed_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|w| w.put_open_alerts("front", vec![alert("front_1", 1_000), alert("front_2", 9_000)]))
                .unwrap();
            store.write(|w| w.put_open_alerts("back", vec![alert("back_1", 1_000)])).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.open_alerts("front").unwrap().len(), 2);
        let gone = store.write(|w| w.forget_closed_alerts(|_, a| a.last_ms > 5_000)).unwrap();
        assert_eq!(gone, 2);
        assert_eq!(store.open_alerts("front").unwrap(), [alert("front_2", 9_000)]);
        assert!(store.open_alerts("back").unwrap().is_empty());
        store.write(|w| w.put_open_alerts("front", vec![])).unwrap();
        assert!(store.open_alerts("front").unwrap().is_empty());
    }

    #[test]
    fn an_alert_queued_before_the_cooldown_is_read_as_its_clips_only_occurrence() {
        use super::super::codec::v2;
        use crate::domain::AlertStage;
        let old = v2::OutboxEntry {
            clip_id: ClipId("front_1".into()),
            notifier: "mqtt".into(),
            alert: v2::Alert {
                clip_id: ClipId("front_1".into()),
                camera_name: "front".into(),
                storage_uri: None,
                view_url: None,
                risk_level: Some(RiskLevel::High),
                activity_type: Some("unknown".into()),
                notify_reason: "risk_level=high".into(),
                summary: Some("someone".into()),
                ts: "2026-01-01T00:00:00.000Z".into(),
                dedupe_key: "front_1".into(),
                upload_failed: false,
                detected_classes: vec!["person".into()],
                stage: AlertStage::Detected,
                snapshot_path: Some("/s/front_1.jpg".into()),
            },
            created_ms: 1,
            attempts: 2,
            next_attempt_ms: 3,
            expires_ms: 4,
            last_error: Some("broker down".into()),
        };
        let mut bytes = 2u16.to_le_bytes().to_vec();
        bytes.extend_from_slice(&rkyv::to_bytes::<rkyv::rancor::Error>(&old).unwrap());
        let read: crate::store::OutboxEntry = decode("outbox entry 1", &bytes).unwrap();
        assert_eq!((read.alert.occurrences, read.alert.occurrences_text), (1, None));
        assert_eq!((read.alert.stage, read.alert.dedupe_key.as_str()), (AlertStage::Detected, "front_1"));
        assert_eq!((read.attempts, read.last_error.as_deref()), (2, Some("broker down")));
        assert_eq!(read.alert.snapshot_path.as_deref(), Some("/s/front_1.jpg"));
    }
}
