//! The cameras' runtime controls (Home Assistant's switches and select), kept
//! so that they survive a restart: one record per camera.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

use super::codec::{Stored, decode, encode};
use super::{Store, StoreError, Writer};
use crate::domain::{RiskLevel, UnixMillis};

/// Camera name → [`ControlsRecord`].
pub(super) const CONTROLS: TableDefinition<&str, &[u8]> = TableDefinition::new("camera_controls");

/// A camera's controls as last set.
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct ControlsRecord {
    /// Live object detection (and alerts from it) on.
    pub detection: bool,
    /// Alerts on.
    pub alerts: bool,
    /// Overrides the alert policy's `min_risk_level` when set.
    pub min_risk_level: Option<RiskLevel>,
    pub updated_ms: UnixMillis,
}

impl Stored for ControlsRecord {
    const VERSION: u16 = 1;
}

impl Store {
    /// Every camera's controls as last set.
    pub fn controls(&self) -> Result<Vec<(String, ControlsRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CONTROLS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_owned(), decode(&format!("controls of {}", k.value()), v.value())?));
        }
        Ok(out)
    }
}

impl Writer<'_> {
    /// Keeps a camera's controls, dated now.
    pub fn put_controls(&mut self, camera: &str, record: &ControlsRecord) -> Result<(), StoreError> {
        let dated = ControlsRecord { updated_ms: self.clock.now_ms(), ..record.clone() };
        self.txn.open_table(CONTROLS)?.insert(camera, encode(&dated)?.as_slice())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_kept_per_camera_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = Store::open(&path).unwrap();
        assert!(store.controls().unwrap().is_empty());
        let off =
            ControlsRecord { detection: false, alerts: true, min_risk_level: Some(RiskLevel::High), updated_ms: 0 };
        store.write(|w| w.put_controls("door", &off)).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let all = store.controls().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "door");
        assert_eq!((all[0].1.detection, all[0].1.min_risk_level), (false, Some(RiskLevel::High)));
        assert!(all[0].1.updated_ms > 0, "dated by the store's clock");
    }
}
