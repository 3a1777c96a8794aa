//! Zones: named polygons of a camera's picture, in normalised coordinates
//! (0..1 of the frame's width and height), each with the object classes it
//! cares about. A detection is in a zone when its *foot point* (the bottom
//! centre of its box, where an object stands) lies inside the polygon.

use serde::Deserialize;

use crate::plugin::Validator;

/// One zone as the config gives it (`cameras[].zones[]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub name: String,
    /// Polygon corners `[x, y]`, each in 0..1 of the frame (x right, y down).
    pub points: Vec<[f32; 2]>,
    /// Classes this zone cares about; empty: every class.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Whether an alert needs an object in this zone (`false`: the zone only
    /// labels the detections in it).
    #[serde(default = "default_required")]
    pub required: bool,
}

fn default_required() -> bool {
    true
}

/// A validated zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    name: String,
    points: Vec<[f32; 2]>,
    classes: Vec<String>,
    required: bool,
}

impl Zone {
    /// A zone from its config; call [`check_zones`] first (an invalid polygon
    /// contains nothing).
    pub fn new(cfg: &ZoneConfig) -> Self {
        Self {
            name: cfg.name.clone(),
            points: cfg.points.clone(),
            classes: cfg.classes.clone(),
            required: cfg.required,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The polygon's corners in normalised coordinates.
    pub fn points(&self) -> &[[f32; 2]] {
        &self.points
    }

    /// The classes it cares about (empty: all).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    pub fn required(&self) -> bool {
        self.required
    }

    pub fn cares_about(&self, class: &str) -> bool {
        self.classes.is_empty() || self.classes.iter().any(|c| c == class)
    }

    /// Whether the normalised point `(x, y)` lies inside the polygon (even-odd
    /// rule; a point on an edge may fall either way).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        let n = self.points.len();
        if n < 3 {
            return false;
        }
        let mut inside = false;
        let mut j = n - 1;
        for i in 0..n {
            let [xi, yi] = self.points[i];
            let [xj, yj] = self.points[j];
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }
}

/// The foot point of a pixel box `[x1, y1, x2, y2]` in a `width` x `height`
/// frame, normalised.
pub fn foot_point(bbox: &[f32; 4], width: u32, height: u32) -> (f32, f32) {
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    ((bbox[0] + bbox[2]) / 2.0 / w, bbox[3] / h)
}

/// A camera's zones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Zones {
    zones: Vec<Zone>,
}

impl Zones {
    pub fn new(zones: Vec<Zone>) -> Self {
        Self { zones }
    }

    pub fn from_config(cfg: &[ZoneConfig]) -> Self {
        Self::new(cfg.iter().map(Zone::new).collect())
    }

    pub fn all(&self) -> &[Zone] {
        &self.zones
    }

    /// The zones that contain the foot point of `class`'s box and care about it.
    pub fn names_at(&self, class: &str, bbox: &[f32; 4], width: u32, height: u32) -> Vec<String> {
        let (x, y) = foot_point(bbox, width, height);
        self.zones.iter().filter(|z| z.cares_about(class) && z.contains(x, y)).map(|z| z.name.clone()).collect()
    }

    /// Whether such a detection may make the camera alert: there is no
    /// required zone, or a required zone that cares about `class` holds its
    /// foot point.
    pub fn admits(&self, class: &str, bbox: &[f32; 4], width: u32, height: u32) -> bool {
        let mut required = self.zones.iter().filter(|z| z.required).peekable();
        if required.peek().is_none() {
            return true;
        }
        let (x, y) = foot_point(bbox, width, height);
        required.any(|z| z.cares_about(class) && z.contains(x, y))
    }
}

/// Checks a camera's zones (`v` is the camera's block): names unique and not
/// empty, at least three points, each coordinate in [0, 1], classes among
/// `known` (the detector's).
pub fn check_zones(zones: &[ZoneConfig], known: &dyn Fn(&str) -> bool, v: &mut Validator<'_>) {
    let mut names = std::collections::HashSet::new();
    for (i, z) in zones.iter().enumerate() {
        let mut v = v.nested(&format!("zones[{i}]"));
        if z.name.trim().is_empty() {
            v.error("name", "must not be empty");
        } else if !names.insert(z.name.as_str()) {
            v.error("name", format!("zone `{}` is defined twice for this camera", z.name));
        }
        if z.points.len() < 3 {
            v.error("points", format!("a zone needs at least 3 points, got {}", z.points.len()));
        }
        for (j, p) in z.points.iter().enumerate() {
            if !p.iter().all(|c| c.is_finite() && (0.0..=1.0).contains(c)) {
                v.error(
                    &format!("points[{j}]"),
                    format!("[{}, {}] is outside the frame: coordinates are fractions of it, 0 to 1", p[0], p[1]),
                );
            }
        }
        for (j, class) in z.classes.iter().enumerate() {
            if !known(class) {
                v.error(&format!("classes[{j}]"), format!("`{class}` is not a class the detector knows"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(points: &[[f32; 2]], classes: &[&str], required: bool) -> Zone {
        Zone::new(&ZoneConfig {
            name: "z".into(),
            points: points.to_vec(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            required,
        })
    }

    const LOWER_HALF: [[f32; 2]; 4] = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]];

    #[test]
    fn a_polygon_contains_what_is_inside_it_also_when_concave() {
        let z = zone(&LOWER_HALF, &[], true);
        assert!(z.contains(0.5, 0.75) && !z.contains(0.5, 0.25) && !z.contains(1.5, 0.75));
        // An L: the notch at the top right is outside.
        let l = zone(&[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], &[], true);
        assert!(l.contains(0.25, 0.25) && l.contains(0.75, 0.75) && !l.contains(0.75, 0.25));
        assert!(!zone(&[[0.0, 0.0], [1.0, 1.0]], &[], true).contains(0.5, 0.5), "two points hold nothing");
    }

    #[test]
    fn the_foot_point_decides_and_only_required_zones_that_care_gate() {
        // A person whose head is in the upper half and feet in the lower half of a 100x100 frame.
        let person = [40.0, 20.0, 60.0, 80.0];
        let zones = Zones::new(vec![zone(&LOWER_HALF, &["car"], true)]);
        assert!(!zones.admits("person", &person, 100, 100), "the zone cares about cars only");
        assert!(zones.admits("car", &person, 100, 100));
        assert!(zones.names_at("person", &person, 100, 100).is_empty());
        let zones = Zones::new(vec![zone(&LOWER_HALF, &[], true)]);
        assert!(zones.admits("person", &person, 100, 100));
        let high = [40.0, 0.0, 60.0, 40.0];
        assert!(!zones.admits("person", &high, 100, 100), "feet in the upper half");
        // An informational zone labels but never gates.
        let zones = Zones::new(vec![zone(&LOWER_HALF, &[], false)]);
        assert!(zones.admits("person", &high, 100, 100));
        assert_eq!(zones.names_at("person", &person, 100, 100), ["z"]);
        assert!(Zones::default().admits("person", &high, 100, 100), "no zones: everything counts");
    }

    #[test]
    fn every_zone_problem_is_reported_with_its_path() {
        let cfg: Vec<ZoneConfig> = serde_saphyr::from_str(
            "- {name: drive, points: [[0, 0], [1, 0], [1, 1]], classes: [person, unicorn]}\n\
             - {name: drive, points: [[0, 0], [1.5, 0]]}\n",
        )
        .unwrap();
        let mut issues = Vec::new();
        let locate = |_: &str| None;
        let mut v = Validator::new("cameras[0]", &mut issues, &locate);
        check_zones(&cfg, &|c| c == "person", &mut v);
        let got: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            got,
            [
                "cameras[0].zones[0].classes[1]: `unicorn` is not a class the detector knows",
                "cameras[0].zones[1].name: zone `drive` is defined twice for this camera",
                "cameras[0].zones[1].points: a zone needs at least 3 points, got 2",
                "cameras[0].zones[1].points[1]: [1.5, 0] is outside the frame: coordinates are fractions of it, 0 to 1",
            ]
        );
        let bad: Result<Vec<ZoneConfig>, _> = serde_saphyr::from_str("- {name: a, points: [], colour: red}\n");
        assert!(bad.is_err(), "unknown keys are refused");
    }
}
