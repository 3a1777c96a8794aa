//! Planar YUV 4:2:0 (BT.601, limited range: what H.264/H.265 cameras send) to
//! packed RGB, for pictures that did not come from openh264's own converter.

/// Converts a `width` x `height` I420 picture into `out` (resized to
/// `width * height * 3`), row by row with integer math.
pub fn i420_to_rgb(
    (y, u, v): (&[u8], &[u8], &[u8]),
    (y_stride, uv_stride): (usize, usize),
    (width, height): (usize, usize),
    out: &mut Vec<u8>,
) {
    out.resize(width * height * 3, 0);
    for (row, line) in out.chunks_exact_mut(width * 3).enumerate().take(height) {
        let ys = &y[row * y_stride..][..width];
        let us = &u[(row / 2) * uv_stride..];
        let vs = &v[(row / 2) * uv_stride..];
        for (x, px) in line.chunks_exact_mut(3).enumerate() {
            let c = (i32::from(ys[x]) - 16) * 298;
            let d = i32::from(us[x / 2]) - 128;
            let e = i32::from(vs[x / 2]) - 128;
            px[0] = ((c + 409 * e + 128) >> 8).clamp(0, 255) as u8;
            px[1] = ((c - 100 * d - 208 * e + 128) >> 8).clamp(0, 255) as u8;
            px[2] = ((c + 516 * d + 128) >> 8).clamp(0, 255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_white_and_red_come_out_right() {
        // 2x2 picture: Y row 0 = black, white; row 1 = grey, red-ish.
        let y = [16u8, 235, 126, 81];
        let mut out = Vec::new();
        i420_to_rgb((&y, &[128], &[128]), (2, 1), (2, 2), &mut out);
        assert_eq!(&out[..6], &[0, 0, 0, 255, 255, 255]);
        assert_eq!(&out[6..9], &[128, 128, 128]);
        // Pure red in BT.601 limited range: Y 81, U 90, V 240.
        let mut red = Vec::new();
        i420_to_rgb((&[81, 81, 81, 81], &[90], &[240]), (2, 1), (2, 2), &mut red);
        assert!(red[0] > 250 && red[1] < 5 && red[2] < 5, "{:?}", &red[..3]);
    }
}
