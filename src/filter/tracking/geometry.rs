//! Box geometry shared by the tracker and the memory.

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// How far the centre of `b` is from the centre of `a`, relative to `a`'s
/// larger side.
pub fn centre_shift(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let (ax, ay) = ((a[0] + a[2]) / 2.0, (a[1] + a[3]) / 2.0);
    let (bx, by) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let size = (a[2] - a[0]).max(a[3] - a[1]).max(1e-6);
    ((bx - ax).powi(2) + (by - ay).powi(2)).sqrt() / size
}

/// A pixel box in fractions of a `width` x `height` frame.
pub fn normalise(bbox: &[f32; 4], width: u32, height: u32) -> [f32; 4] {
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    [bbox[0] / w, bbox[1] / h, bbox[2] / w, bbox[3] / h]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_and_shift() {
        assert_eq!(iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 0.0, 3.0, 2.0]), 1.0 / 3.0);
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0]), 0.0);
        assert_eq!(centre_shift(&[0.0, 0.0, 10.0, 20.0], &[5.0, 0.0, 15.0, 20.0]), 0.25);
        assert_eq!(normalise(&[10.0, 20.0, 30.0, 40.0], 100, 200), [0.1, 0.1, 0.3, 0.2]);
    }
}
