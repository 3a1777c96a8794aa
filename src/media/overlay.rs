//! Drawing on a frame: polygons in normalised coordinates (tinted inside,
//! outlined) and short labels in an 8x8 bitmap font, for pictures a user
//! checks a camera's zones and masks on.

use super::RgbFrame;
use super::motion::rasterize_polygon;

/// Colours that stay apart on camera pictures, for one polygon each.
pub const PALETTE: [[u8; 3]; 6] =
    [[255, 200, 0], [0, 220, 255], [255, 80, 200], [120, 255, 80], [255, 120, 40], [160, 140, 255]];

/// Tints the inside of `polygon` (normalised coordinates) towards `color` by
/// `alpha` (0..1) and outlines it in `color`, `thickness` pixels wide.
pub fn draw_polygon(frame: &mut RgbFrame, polygon: &[[f32; 2]], color: [u8; 3], alpha: f32, thickness: u32) {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if polygon.len() < 3 || w == 0 || h == 0 || frame.data.len() < w * h * 3 {
        return;
    }
    if alpha > 0.0 {
        let mut inside = vec![0u8; w * h];
        rasterize_polygon(polygon, w, h, &mut inside, 1);
        let a = alpha.clamp(0.0, 1.0);
        for (px, _) in frame.data.chunks_exact_mut(3).zip(&inside).filter(|(_, m)| **m == 1) {
            for (c, target) in px.iter_mut().zip(color) {
                *c = (f32::from(*c) * (1.0 - a) + f32::from(target) * a).round() as u8;
            }
        }
    }
    let to_px = |p: [f32; 2]| {
        ((p[0].clamp(0.0, 1.0) * (w - 1) as f32).round() as i64, (p[1].clamp(0.0, 1.0) * (h - 1) as f32).round() as i64)
    };
    for (i, a) in polygon.iter().enumerate() {
        let b = polygon[(i + 1) % polygon.len()];
        draw_line(frame, to_px(*a), to_px(b), color, thickness);
    }
}

/// A line from `a` to `b` (pixels), `thickness` pixels wide (Bresenham, with
/// a square brush).
pub fn draw_line(frame: &mut RgbFrame, a: (i64, i64), b: (i64, i64), color: [u8; 3], thickness: u32) {
    let (mut x, mut y) = a;
    let (dx, dy) = ((b.0 - a.0).abs(), -(b.1 - a.1).abs());
    let (sx, sy) = (if a.0 < b.0 { 1 } else { -1 }, if a.1 < b.1 { 1 } else { -1 });
    let mut err = dx + dy;
    let r = i64::from(thickness.max(1)) / 2;
    let lo = -r;
    let hi = i64::from(thickness.max(1)) - 1 - r;
    loop {
        for oy in lo..=hi {
            for ox in lo..=hi {
                put(frame, x + ox, y + oy, color);
            }
        }
        if (x, y) == b {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// Writes `text` (ASCII; other characters show as `?`) with its top-left
/// corner at `(x, y)`, each font pixel `scale` pixels wide, on a dark box so
/// that it reads on any picture.
pub fn draw_text(frame: &mut RgbFrame, x: i64, y: i64, text: &str, color: [u8; 3], scale: u32) {
    let s = i64::from(scale.max(1));
    let chars: Vec<u8> =
        text.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c as u8 } else { b'?' }).collect();
    let width = chars.len() as i64 * 8 * s;
    for py in (y - s)..(y + 9 * s) {
        for px in (x - s)..(x + width + s) {
            put(frame, px, py, [0, 0, 0]);
        }
    }
    for (i, ch) in chars.iter().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[usize::from(*ch)];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                let gx = x + (i as i64 * 8 + col) * s;
                let gy = y + row as i64 * s;
                for oy in 0..s {
                    for ox in 0..s {
                        put(frame, gx + ox, gy + oy, color);
                    }
                }
            }
        }
    }
}

fn put(frame: &mut RgbFrame, x: i64, y: i64, color: [u8; 3]) {
    if x < 0 || y < 0 || x >= i64::from(frame.width) || y >= i64::from(frame.height) {
        return;
    }
    let i = (y as usize * frame.width as usize + x as usize) * 3;
    if let Some(px) = frame.data.get_mut(i..i + 3) {
        px.copy_from_slice(&color);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(w: u32, h: u32) -> RgbFrame {
        RgbFrame { ts_s: 0.0, width: w, height: h, data: vec![100; (w * h * 3) as usize] }
    }

    fn px(f: &RgbFrame, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * f.width + x) * 3) as usize;
        [f.data[i], f.data[i + 1], f.data[i + 2]]
    }

    #[test]
    fn a_polygon_is_tinted_inside_and_outlined_and_nothing_outside_changes() {
        let mut f = grey(100, 100);
        draw_polygon(&mut f, &[[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]], [255, 0, 0], 0.5, 2);
        assert_eq!(px(&f, 40, 40), [178, 50, 50], "inside: half way to red");
        assert_eq!(px(&f, 40, 20), [255, 0, 0], "on the top edge");
        assert_eq!(px(&f, 59, 40), [255, 0, 0], "on the right edge");
        assert_eq!(px(&f, 80, 80), [100, 100, 100], "outside");
        assert_eq!(px(&f, 10, 40), [100, 100, 100], "outside");
    }

    #[test]
    fn text_is_drawn_in_its_colour_on_a_dark_box_and_clipped_at_the_edges() {
        let mut f = grey(64, 32);
        draw_text(&mut f, 2, 2, "Hi", [255, 255, 255], 2);
        let white = f.data.chunks_exact(3).filter(|p| *p == [255, 255, 255]).count();
        assert!(white > 20, "the glyphs are drawn: {white} pixels");
        assert_eq!(px(&f, 1, 1), [0, 0, 0], "the box around the text");
        assert_eq!(px(&f, 60, 30), [100, 100, 100], "away from the text");
        // Off the frame: nothing panics, nothing is drawn.
        draw_text(&mut f, 60, 30, "a long label off the edge", [255, 0, 0], 3);
        draw_line(&mut f, (-50, -50), (200, 10), [0, 255, 0], 3);
    }
}
