//! A camera's memory of stationary objects: where objects stood still in its
//! recent events (a post the detector takes for a person, a parked car), so that
//! the next event does not alert on them either, even when motion crosses them.
//! Bounded: at most [`MEMORY_ENTRIES`] places, each forgotten
//! [`MEMORY_MAX_AGE_MS`] after it was last seen. Kept in memory only: after a
//! restart each object is judged by its own event again.

use super::geometry::iou;
use crate::domain::UnixMillis;

/// Places remembered per camera (the least recently seen goes first).
pub const MEMORY_ENTRIES: usize = 32;
/// A place not seen again for this long is forgotten (24 h).
pub const MEMORY_MAX_AGE_MS: UnixMillis = 24 * 3600 * 1000;
/// Boxes of one class that overlap this much are the same object.
const SAME_PLACE_IOU: f32 = 0.5;

/// One remembered stationary object.
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    pub class: String,
    /// `[x1, y1, x2, y2]` in fractions of the frame.
    pub bbox: [f32; 4],
    pub first_ms: UnixMillis,
    pub last_ms: UnixMillis,
    /// Events it was seen standing still in.
    pub events: u32,
}

#[derive(Debug, Default)]
pub struct StationaryMemory {
    entries: Vec<Remembered>,
}

impl StationaryMemory {
    pub fn entries(&self) -> &[Remembered] {
        &self.entries
    }

    fn find(&self, class: &str, bbox: &[f32; 4], now_ms: UnixMillis) -> Option<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.class == class && now_ms - e.last_ms <= MEMORY_MAX_AGE_MS)
            .map(|(i, e)| (i, iou(&e.bbox, bbox)))
            .filter(|(_, o)| *o >= SAME_PLACE_IOU)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    /// Whether an object of `class` stood still at (normalised) `bbox` in a recent event.
    pub fn knows(&self, class: &str, bbox: &[f32; 4], now_ms: UnixMillis) -> bool {
        self.find(class, bbox, now_ms).is_some()
    }

    /// Records that an object stood still at `bbox` during an event ending `now_ms`.
    pub fn remember(&mut self, class: &str, bbox: [f32; 4], now_ms: UnixMillis) {
        self.prune(now_ms);
        match self.find(class, &bbox, now_ms) {
            Some(i) => {
                let e = &mut self.entries[i];
                e.bbox = bbox;
                e.last_ms = e.last_ms.max(now_ms);
                e.events += 1;
            }
            None => {
                if self.entries.len() >= MEMORY_ENTRIES
                    && let Some(oldest) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.last_ms).map(|(i, _)| i)
                {
                    self.entries.swap_remove(oldest);
                }
                self.entries.push(Remembered {
                    class: class.to_owned(),
                    bbox,
                    first_ms: now_ms,
                    last_ms: now_ms,
                    events: 1,
                });
            }
        }
    }

    /// The object remembered at `bbox` moved away.
    pub fn forget(&mut self, class: &str, bbox: &[f32; 4], now_ms: UnixMillis) {
        if let Some(i) = self.find(class, bbox, now_ms) {
            self.entries.swap_remove(i);
        }
    }

    fn prune(&mut self, now_ms: UnixMillis) {
        self.entries.retain(|e| now_ms - e.last_ms <= MEMORY_MAX_AGE_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POST: [f32; 4] = [0.04, 0.19, 0.06, 0.24];

    #[test]
    fn a_place_is_known_until_it_ages_out_or_the_object_moves() {
        let mut m = StationaryMemory::default();
        m.remember("person", POST, 1_000);
        assert!(m.knows("person", &[0.041, 0.19, 0.061, 0.241], 2_000), "the same place, give or take");
        assert!(!m.knows("car", &POST, 2_000), "another class");
        assert!(!m.knows("person", &[0.5, 0.5, 0.6, 0.6], 2_000), "another place");
        assert!(!m.knows("person", &POST, 1_000 + MEMORY_MAX_AGE_MS + 1), "too old");
        m.remember("person", POST, 5_000);
        assert_eq!((m.entries().len(), m.entries()[0].events, m.entries()[0].last_ms), (1, 2, 5_000));
        m.forget("person", &POST, 6_000);
        assert!(!m.knows("person", &POST, 6_000));
    }

    #[test]
    fn the_memory_is_bounded_and_drops_the_least_recently_seen() {
        let mut m = StationaryMemory::default();
        for i in 0..(MEMORY_ENTRIES as i64 + 10) {
            let x = i as f32 / 100.0;
            m.remember("car", [x, 0.0, x + 0.005, 0.01], i);
        }
        assert_eq!(m.entries().len(), MEMORY_ENTRIES);
        assert!(!m.knows("car", &[0.0, 0.0, 0.005, 0.01], 100), "the oldest went");
        assert!(m.knows("car", &[0.41, 0.0, 0.415, 0.01], 100), "the newest stayed");
    }
}
