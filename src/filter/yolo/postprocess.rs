//! Post-processing shared by both heads: the COCO class table, the letterbox
//! that fits a frame into the model input (and maps boxes back), the YOLOX grid
//! and the decoding of each head's output, IoU and per-class NMS.

/// The 80 COCO class names, in the models' output order.
#[rustfmt::skip]
pub const COCO_CLASSES: [&str; 80] = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
];

const YOLOX_STRIDES: [u32; 3] = [8, 16, 32];

/// The COCO index of a class name.
pub fn class_index(name: &str) -> Option<usize> {
    COCO_CLASSES.iter().position(|c| *c == name)
}

// ---------------------------------------------------------------------------
// Geometry: letterbox, IoU, NMS

/// How a frame is scaled and padded into the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub new_w: u32,
    pub new_h: u32,
    pub pad_x: u32,
    pub pad_y: u32,
}

impl Letterbox {
    /// Fits `src` into `dst` keeping the aspect ratio; `centred` pads on both sides,
    /// otherwise the image sits in the top-left corner.
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, centred: bool) -> Self {
        let scale = (dst_w as f32 / src_w.max(1) as f32).min(dst_h as f32 / src_h.max(1) as f32);
        // Truncation, as YOLOX's reference preprocessing does.
        let new_w = ((src_w as f32 * scale) as u32).clamp(1, dst_w);
        let new_h = ((src_h as f32 * scale) as u32).clamp(1, dst_h);
        let (pad_x, pad_y) = if centred { ((dst_w - new_w) / 2, (dst_h - new_h) / 2) } else { (0, 0) };
        Self { scale, new_w, new_h, pad_x, pad_y }
    }

    /// Maps a box in model-input pixels back to frame pixels, clipped to the frame.
    pub fn to_frame(&self, b: [f32; 4], frame_w: u32, frame_h: u32) -> [f32; 4] {
        let (px, py) = (self.pad_x as f32, self.pad_y as f32);
        let (fw, fh) = (frame_w as f32, frame_h as f32);
        [
            ((b[0] - px) / self.scale).clamp(0.0, fw),
            ((b[1] - py) / self.scale).clamp(0.0, fh),
            ((b[2] - px) / self.scale).clamp(0.0, fw),
            ((b[3] - py) / self.scale).clamp(0.0, fh),
        ]
    }
}

/// A scored box in model-input pixels, before NMS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// COCO class index.
    pub class: usize,
    pub score: f32,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Per-class greedy non-maximum suppression: within each class, a box is dropped
/// when it overlaps a higher-scoring kept box by more than `iou_threshold`.
/// Returns the kept boxes, highest score first.
pub fn nms_per_class(mut candidates: Vec<Candidate>, iou_threshold: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| k.class != c.class || iou(&k.bbox, &c.bbox) <= iou_threshold) {
            kept.push(c);
        }
    }
    kept
}

// ---------------------------------------------------------------------------
// Head decoding

/// One YOLOX grid point: cell coordinates and stride.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct GridPoint {
    gx: f32,
    gy: f32,
    stride: f32,
}

/// The anchor-free grid of YOLOX for an input of `w` x `h`: strides 8/16/32, each
/// grid row-major.
pub(super) fn yolox_grid(w: u32, h: u32) -> Vec<GridPoint> {
    let mut grid = Vec::new();
    for s in YOLOX_STRIDES {
        let (gw, gh) = (w / s, h / s);
        for gy in 0..gh {
            for gx in 0..gw {
                grid.push(GridPoint { gx: gx as f32, gy: gy as f32, stride: s as f32 });
            }
        }
    }
    grid
}

/// Decodes YOLOX rows `[dx, dy, log_w, log_h, obj, classes…]` into candidates of
/// the wanted classes scoring at least `min_score`.
pub(super) fn decode_yolox(data: &[f32], grid: &[GridPoint], wanted: &[usize], min_score: f32) -> Vec<Candidate> {
    let row_len = 5 + COCO_CLASSES.len();
    let mut out = Vec::new();
    for (row, g) in data.chunks_exact(row_len).zip(grid) {
        let obj = row[4];
        // Every class score is at most 1, so the objectness bounds the score.
        if obj < min_score {
            continue;
        }
        let cx = (row[0] + g.gx) * g.stride;
        let cy = (row[1] + g.gy) * g.stride;
        let w = row[2].exp() * g.stride;
        let h = row[3].exp() * g.stride;
        for &class in wanted {
            let score = obj * row[5 + class];
            if score >= min_score {
                out.push(Candidate { class, score, bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0] });
            }
        }
    }
    out
}

/// Decodes YOLOv8 output (`channels_first`: `[4 + 80, n]`, else `[n, 4 + 80]`).
pub(super) fn decode_yolov8(
    data: &[f32],
    n: usize,
    channels_first: bool,
    wanted: &[usize],
    min_score: f32,
) -> Vec<Candidate> {
    let channels = 4 + COCO_CLASSES.len();
    let at = |i: usize, k: usize| if channels_first { data[k * n + i] } else { data[i * channels + k] };
    let mut out = Vec::new();
    for i in 0..n {
        for &class in wanted {
            let score = at(i, 4 + class);
            if score >= min_score {
                let (cx, cy, w, h) = (at(i, 0), at(i, 1), at(i, 2), at(i, 3));
                out.push(Candidate { class, score, bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0] });
            }
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    fn cand(class: usize, score: f32, bbox: [f32; 4]) -> Candidate {
        Candidate { class, score, bbox }
    }

    #[test]
    fn iou_of_simple_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        // Half overlap: 50 / 150.
        assert!((iou(&a, &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        // Degenerate boxes do not divide by zero.
        assert_eq!(iou(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 1.0]), 0.0);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_per_class() {
        let kept = nms_per_class(
            vec![
                cand(0, 0.6, [1.0, 1.0, 11.0, 11.0]),   // overlaps the 0.9 person: dropped
                cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),   // best person
                cand(16, 0.7, [0.0, 0.0, 10.0, 10.0]),  // a dog in the same place: other class, kept
                cand(0, 0.8, [50.0, 50.0, 60.0, 60.0]), // a second person elsewhere
                cand(0, 0.55, [5.0, 0.0, 15.0, 10.0]),  // IoU 1/3 with the best: under 0.45, kept
            ],
            0.45,
        );
        let summary: Vec<(usize, f32)> = kept.iter().map(|c| (c.class, c.score)).collect();
        assert_eq!(summary, vec![(0, 0.9), (0, 0.8), (16, 0.7), (0, 0.55)]);
    }

    #[test]
    fn letterbox_top_left_and_centred() {
        // 768x576 into 416: scale 416/768, 416x312, YOLOX pads below.
        let lb = Letterbox::new(768, 576, 416, 416, false);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_x, lb.pad_y), (416, 312, 0, 0));
        let b = lb.to_frame([208.0, 104.0, 416.0, 312.0], 768, 576);
        assert!((b[0] - 384.0).abs() < 0.01 && (b[1] - 192.0).abs() < 0.01);
        assert!((b[2] - 768.0).abs() < 0.01 && (b[3] - 576.0).abs() < 0.01);

        // Centred: 52 px of padding above and below.
        let lb = Letterbox::new(768, 576, 416, 416, true);
        assert_eq!((lb.pad_x, lb.pad_y), (0, 52));
        let b = lb.to_frame([0.0, 52.0, 416.0, 364.0], 768, 576);
        assert!(b[1].abs() < 0.01 && (b[3] - 576.0).abs() < 0.01);

        // Portrait: padding on the right (top-left) or both sides (centred).
        let lb = Letterbox::new(300, 600, 640, 640, true);
        assert_eq!((lb.new_w, lb.new_h, lb.pad_x, lb.pad_y), (320, 640, 160, 0));
        // Boxes outside the image are clipped to the frame.
        let b = lb.to_frame([0.0, -10.0, 640.0, 700.0], 300, 600);
        assert_eq!(b, [0.0, 0.0, 300.0, 600.0]);
    }

    #[test]
    fn yolox_grid_matches_the_declared_outputs() {
        assert_eq!(yolox_grid(416, 416).len(), 3549);
        assert_eq!(yolox_grid(640, 640).len(), 8400);
        let g = yolox_grid(416, 416);
        // Row-major per stride: the second point is x + 1 on the stride-8 grid;
        // the stride-16 grid starts after 52².
        assert_eq!(g[1], GridPoint { gx: 1.0, gy: 0.0, stride: 8.0 });
        assert_eq!(g[52], GridPoint { gx: 0.0, gy: 1.0, stride: 8.0 });
        assert_eq!(g[52 * 52], GridPoint { gx: 0.0, gy: 0.0, stride: 16.0 });
        assert_eq!(g[3548], GridPoint { gx: 12.0, gy: 12.0, stride: 32.0 });
    }

    #[test]
    fn yolox_rows_decode_to_boxes() {
        let grid = yolox_grid(64, 64); // 8² + 4² + 2² = 84 points
        let mut data = vec![0.0f32; grid.len() * 85];
        // Point (gx 3, gy 2) of stride 8: centre (3.5 * 8, 2.5 * 8) = (28, 20), 16x8 box.
        let i = 2 * 8 + 3;
        let row = &mut data[i * 85..(i + 1) * 85];
        row[..5].copy_from_slice(&[0.5, 0.5, 2.0f32.ln(), 1.0f32.ln(), 0.9]);
        row[5] = 0.8; // person
        row[5 + 16] = 0.3; // dog: 0.27 overall, under the threshold
        let c = decode_yolox(&data, &grid, &[0, 16], 0.5);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].class, 0);
        assert!((c[0].score - 0.72).abs() < 1e-6);
        let expected = [20.0, 16.0, 36.0, 24.0];
        for (a, b) in c[0].bbox.iter().zip(expected) {
            assert!((a - b).abs() < 1e-4, "{:?}", c[0].bbox);
        }
        // Classes not configured are ignored even when they score high.
        assert!(decode_yolox(&data, &grid, &[16], 0.5).is_empty());
    }

    #[test]
    fn yolov8_rows_decode_in_both_layouts() {
        let n = 3;
        let channels = 84;
        let mut first = vec![0.0f32; channels * n];
        // Anchor 1: centre (100, 50), 20x10, class 2 (car) 0.9.
        for (k, v) in [(0, 100.0), (1, 50.0), (2, 20.0), (3, 10.0), (4 + 2, 0.9)] {
            first[k * n + 1] = v;
        }
        let mut last = vec![0.0f32; channels * n];
        for i in 0..n {
            for k in 0..channels {
                last[i * channels + k] = first[k * n + i];
            }
        }
        for (data, channels_first) in [(&first, true), (&last, false)] {
            let c = decode_yolov8(data, n, channels_first, &[0, 2], 0.5);
            assert_eq!(c, vec![cand(2, 0.9, [90.0, 45.0, 110.0, 55.0])]);
        }
    }
}
