//! The cameras' runtime controls, switched from Home Assistant: *Detection*,
//! *Alerts* and *Minimum risk level*. They take effect at once (the pipeline
//! and the live cameras read an in-memory copy, no I/O per frame) and are kept
//! in the store so that they survive a restart.
//!
//! - Detection off: the camera still records motion clips and the pipeline
//!   still takes them (recorded, uploaded, kept), but no object detection
//!   runs: the live camera sends no frame to the detector (no early alert)
//!   and the clip's filter stage is skipped with nothing detected, so no alert
//!   comes from detection (`notify_on_motion` and a VLM that runs `always`
//!   still apply).
//! - Alerts off: clips are processed and recorded as usual; nothing is
//!   notified (the decision says `alerts off`), early alerts neither.
//! - Minimum risk level: overrides the alert policy's `min_risk_level` for the
//!   camera; unset, the policy's own applies.
//!
//! A leaf beside `store` and `domain`: the pipeline, the sources and the Home
//! Assistant device import it, it imports none of them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::domain::{CameraName, RiskLevel};
use crate::store::{ControlsRecord, Store, StoreError};

/// A camera's controls now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraControls {
    pub detection: bool,
    pub alerts: bool,
    /// Overrides the alert policy's minimum risk level when set.
    pub min_risk_level: Option<RiskLevel>,
}

impl Default for CameraControls {
    fn default() -> Self {
        Self { detection: true, alerts: true, min_risk_level: None }
    }
}

/// One change asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Detection(bool),
    Alerts(bool),
    /// `None`: back to the policy's own level.
    MinRiskLevel(Option<RiskLevel>),
}

/// The lock-free copy one camera's readers share.
#[derive(Debug)]
struct Slot {
    detection: AtomicBool,
    alerts: AtomicBool,
    /// 0: unset, else 1 + the level's rank.
    min_risk: AtomicU8,
}

fn risk_code(r: Option<RiskLevel>) -> u8 {
    match r {
        None => 0,
        Some(RiskLevel::Low) => 1,
        Some(RiskLevel::Medium) => 2,
        Some(RiskLevel::High) => 3,
    }
}

fn risk_of(code: u8) -> Option<RiskLevel> {
    match code {
        1 => Some(RiskLevel::Low),
        2 => Some(RiskLevel::Medium),
        3 => Some(RiskLevel::High),
        _ => None,
    }
}

impl Slot {
    fn new(c: CameraControls) -> Self {
        Self {
            detection: AtomicBool::new(c.detection),
            alerts: AtomicBool::new(c.alerts),
            min_risk: AtomicU8::new(risk_code(c.min_risk_level)),
        }
    }

    fn get(&self) -> CameraControls {
        CameraControls {
            detection: self.detection.load(Ordering::Relaxed),
            alerts: self.alerts.load(Ordering::Relaxed),
            min_risk_level: risk_of(self.min_risk.load(Ordering::Relaxed)),
        }
    }
}

/// Whether a live camera detects objects now: a load of one atomic per frame.
#[derive(Debug, Clone)]
pub struct DetectionSwitch(Option<Arc<Slot>>);

impl DetectionSwitch {
    /// A switch that is always on (a camera without controls).
    pub fn always_on() -> Self {
        Self(None)
    }

    pub fn is_on(&self) -> bool {
        self.0.as_ref().is_none_or(|s| s.detection.load(Ordering::Relaxed))
    }
}

/// Every configured camera's controls; cheap to clone. A camera that is not
/// configured has the defaults (everything on) and cannot be changed.
#[derive(Clone)]
pub struct Controls {
    slots: Arc<BTreeMap<CameraName, Arc<Slot>>>,
    store: Option<Store>,
    /// Bumped on every change (the Home Assistant device publishes the states).
    changes: Arc<watch::Sender<u64>>,
    /// Serialises the store writes of [`Controls::persist`].
    writing: Arc<Mutex<()>>,
}

impl Default for Controls {
    /// No camera, nothing kept: everything on.
    fn default() -> Self {
        Self::in_memory(&[])
    }
}

impl std::fmt::Debug for Controls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<_> = self.slots.iter().map(|(c, s)| (c.as_str(), s.get())).collect();
        f.debug_struct("Controls").field("cameras", &all).finish_non_exhaustive()
    }
}

impl Controls {
    /// `cameras` with everything on, kept nowhere (tools, tests).
    pub fn in_memory(cameras: &[CameraName]) -> Self {
        Self::with(cameras, BTreeMap::new(), None)
    }

    /// `cameras` with their controls as last kept in `store`; changes are kept there.
    pub fn load(store: &Store, cameras: &[CameraName]) -> Result<Self, StoreError> {
        let kept: BTreeMap<String, CameraControls> = store
            .controls()?
            .into_iter()
            .map(|(camera, r)| {
                (camera, CameraControls { detection: r.detection, alerts: r.alerts, min_risk_level: r.min_risk_level })
            })
            .collect();
        for (camera, c) in &kept {
            if cameras.iter().any(|k| k.as_str() == camera) && *c != CameraControls::default() {
                info!(camera = %camera, detection = c.detection, alerts = c.alerts,
                    min_risk_level = ?c.min_risk_level, "camera controls restored");
            }
        }
        Ok(Self::with(cameras, kept, Some(store.clone())))
    }

    fn with(cameras: &[CameraName], kept: BTreeMap<String, CameraControls>, store: Option<Store>) -> Self {
        let slots = cameras
            .iter()
            .map(|c| (c.clone(), Arc::new(Slot::new(kept.get(c.as_str()).copied().unwrap_or_default()))))
            .collect();
        Self { slots: Arc::new(slots), store, changes: Arc::new(watch::channel(0).0), writing: Arc::default() }
    }

    /// The cameras that have controls.
    pub fn cameras(&self) -> impl Iterator<Item = &CameraName> {
        self.slots.keys()
    }

    /// A camera's controls now.
    pub fn get(&self, camera: &CameraName) -> CameraControls {
        self.slots.get(camera).map(|s| s.get()).unwrap_or_default()
    }

    /// The live camera's detection switch.
    pub fn detection(&self, camera: &CameraName) -> DetectionSwitch {
        DetectionSwitch(self.slots.get(camera).cloned())
    }

    /// Applies `change` in memory at once (readers see it on their next look).
    /// Returns the camera's controls after it, or `None` for a camera that is
    /// not configured. [`Controls::persist`] keeps it.
    pub fn set(&self, camera: &CameraName, change: Change) -> Option<CameraControls> {
        let slot = self.slots.get(camera)?;
        match change {
            Change::Detection(on) => slot.detection.store(on, Ordering::Relaxed),
            Change::Alerts(on) => slot.alerts.store(on, Ordering::Relaxed),
            Change::MinRiskLevel(r) => slot.min_risk.store(risk_code(r), Ordering::Relaxed),
        }
        let now = slot.get();
        info!(camera = %camera, detection = now.detection, alerts = now.alerts,
            min_risk_level = ?now.min_risk_level, "camera controls changed");
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        Some(now)
    }

    /// Keeps the camera's controls as they are now (blocking: a store write).
    /// Writes are serialised and each writes the latest state, so that
    /// overlapping changes end with the last one kept.
    pub fn persist(&self, camera: &CameraName) -> Result<(), StoreError> {
        let Some(store) = &self.store else { return Ok(()) };
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.get(camera);
        let record = ControlsRecord {
            detection: c.detection,
            alerts: c.alerts,
            min_risk_level: c.min_risk_level,
            updated_ms: 0,
        };
        store.write(|w| w.put_controls(camera.as_str(), &record))
    }

    /// [`Controls::set`] then [`Controls::persist`] off the async workers
    /// (call it from the runtime); a failed write is logged (the change holds
    /// until the restart).
    pub fn apply(&self, camera: &CameraName, change: Change) -> Option<CameraControls> {
        let now = self.set(camera, change)?;
        if self.store.is_some() {
            let (controls, camera) = (self.clone(), camera.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = controls.persist(&camera) {
                    warn!(camera = %camera, error = ?e, "cannot keep the camera's controls; they hold until the next restart");
                }
            });
        }
        Some(now)
    }

    /// Changes with every [`Controls::set`].
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_at_once_by_every_reader_and_only_for_its_camera() {
        let cams = [CameraName::from("door"), CameraName::from("yard")];
        let c = Controls::in_memory(&cams);
        let door = c.detection(&cams[0]);
        let mut changes = c.changes();
        assert!(door.is_on());
        assert_eq!(c.set(&cams[0], Change::Detection(false)).map(|c| c.detection), Some(false));
        assert!(!door.is_on(), "the live camera's copy follows");
        assert!(c.detection(&cams[1]).is_on());
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        c.set(&cams[1], Change::MinRiskLevel(Some(RiskLevel::High)));
        c.set(&cams[1], Change::Alerts(false));
        assert_eq!(
            c.get(&cams[1]),
            CameraControls { detection: true, alerts: false, min_risk_level: Some(RiskLevel::High) }
        );
        assert!(changes.has_changed().unwrap());
        assert_eq!(c.set(&"attic".into(), Change::Alerts(false)), None, "not a configured camera");
        assert_eq!(c.get(&"attic".into()), CameraControls::default());
        assert!(DetectionSwitch::always_on().is_on());
    }

    #[test]
    fn kept_controls_come_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let cams = [CameraName::from("door")];
        {
            let store = Store::open(&path).unwrap();
            let c = Controls::load(&store, &cams).unwrap();
            c.set(&cams[0], Change::Alerts(false));
            c.set(&cams[0], Change::MinRiskLevel(Some(RiskLevel::Low)));
            c.persist(&cams[0]).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let c = Controls::load(&store, &cams).unwrap();
        assert_eq!(
            c.get(&cams[0]),
            CameraControls { detection: true, alerts: false, min_risk_level: Some(RiskLevel::Low) }
        );
    }
}
