//! Alert quality: zones and stationary objects.
//!
//! - [`zone`]: a camera's named polygons (normalised coordinates) and which
//!   classes each cares about; a detection is in a zone when its foot point is.
//! - [`track`]: the objects of one event, linked across the frames the detector
//!   looked at and judged moving or stationary ([`EventTracker`]).
//! - [`memory`]: where objects stood still in a camera's recent events.
//! - [`motion`]: how much of a box changed (the camera's motion detector, or
//!   two sampled frames of a clip).
//!
//! One [`CameraTracking`] per camera holds its zones and its memory; the clip
//! filter and the live detector of that camera share it ([`Tracking`]).

mod geometry;
pub mod memory;
pub mod motion;
pub mod track;
pub mod zone;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use geometry::iou;
pub use memory::{Remembered, StationaryMemory};
pub use motion::{MotionMask, box_change};
pub use track::{EventTracker, MAX_DETECTIONS, Tracked};
pub use zone::{Zone, ZoneConfig, Zones, check_zones, foot_point};

use crate::domain::{CameraName, UnixMillis};

/// One camera's zones and memory of stationary objects.
#[derive(Debug)]
pub struct CameraTracking {
    camera: CameraName,
    zones: Zones,
    memory: Mutex<StationaryMemory>,
}

impl CameraTracking {
    pub fn new(camera: CameraName, zones: Zones) -> Arc<Self> {
        Arc::new(Self { camera, zones, memory: Mutex::new(StationaryMemory::default()) })
    }

    pub fn camera(&self) -> &CameraName {
        &self.camera
    }

    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    /// The camera's memory of stationary objects.
    pub fn memory(&self) -> MutexGuard<'_, StationaryMemory> {
        // Only plain list updates happen under the lock: a panic cannot leave it half-done.
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every configured camera's [`CameraTracking`].
#[derive(Debug, Default)]
pub struct Tracking {
    cameras: HashMap<CameraName, Arc<CameraTracking>>,
}

impl Tracking {
    pub fn new(cameras: impl IntoIterator<Item = (CameraName, Zones)>) -> Arc<Self> {
        let cameras =
            cameras.into_iter().map(|(name, zones)| (name.clone(), CameraTracking::new(name, zones))).collect();
        Arc::new(Self { cameras })
    }

    /// The camera's tracking; a camera that is not configured gets one of its
    /// own (no zones, nothing remembered past this clip).
    pub fn camera(&self, name: &CameraName) -> Arc<CameraTracking> {
        self.cameras.get(name).cloned().unwrap_or_else(|| CameraTracking::new(name.clone(), Zones::default()))
    }
}

/// What a clip is filtered with: its camera's tracking and the time (for the
/// memory's ages).
#[derive(Debug, Clone)]
pub struct TrackContext {
    pub camera: Arc<CameraTracking>,
    pub now_ms: UnixMillis,
}

impl TrackContext {
    /// A camera of its own with no zones and no history (tools, tests).
    pub fn standalone(camera: &str, now_ms: UnixMillis) -> Self {
        Self { camera: CameraTracking::new(camera.into(), Zones::default()), now_ms }
    }
}
