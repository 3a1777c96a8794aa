//! The two-pass box downscale of the luma plane: rows summed into a `u16` line
//! first, then columns, with fixed-width fast paths for the common ratios.

/// Input and downscaled sizes and the box boundaries between them.
#[derive(Debug, Clone)]
pub(super) struct Geometry {
    pub(super) in_w: u32,
    pub(super) in_h: u32,
    pub(super) out_w: usize,
    pub(super) out_h: usize,
    /// Source column where output column `x` starts; `out_w + 1` entries.
    pub(super) col_start: Vec<usize>,
    /// Source row where output row `y` starts; `out_h + 1` entries.
    pub(super) row_start: Vec<usize>,
    /// 1 / (columns in output column `x`).
    pub(super) inv_cols: Vec<f32>,
}

/// Largest number of source rows or columns averaged into one output pixel, so
/// that row sums of 8-bit samples fit the `u16` accumulator (255 * 257 < 65536).
const MAX_BOX: u32 = 256;

impl Geometry {
    pub(super) fn new(in_w: u32, in_h: u32, target_w: u32) -> Self {
        // Never upscale; keep the aspect ratio; keep each box at most MAX_BOX wide and high.
        let out_w = target_w.min(in_w).max(in_w.div_ceil(MAX_BOX)).max(1);
        let out_h = ((u64::from(in_h) * u64::from(out_w) + u64::from(in_w) / 2) / u64::from(in_w)) as u32;
        let out_h = out_h.clamp(in_h.div_ceil(MAX_BOX).max(1), in_h);
        let bounds = |n_in: u32, n_out: u32| -> Vec<usize> {
            (0..=u64::from(n_out)).map(|i| (i * u64::from(n_in) / u64::from(n_out)) as usize).collect()
        };
        let col_start = bounds(in_w, out_w);
        let row_start = bounds(in_h, out_h);
        let inv_cols = col_start.windows(2).map(|w| 1.0 / (w[1] - w[0]) as f32).collect();
        Self { in_w, in_h, out_w: out_w as usize, out_h: out_h as usize, col_start, row_start, inv_cols }
    }

    pub(super) fn pixels(&self) -> usize {
        self.out_w * self.out_h
    }
}

/// Box-downscales the `in_w` x `in_h` plane `src` (rows `stride` bytes apart) into
/// `out` (`out_w * out_h` box averages, rounded), using `acc` (`in_w` entries) as
/// scratch.
/// The caller checked that `src` holds the whole plane.
pub(super) fn box_downscale(g: &Geometry, src: &[u8], stride: usize, acc: &mut [u16], out: &mut [u8]) {
    let in_w = g.in_w as usize;
    for (oy, out_row) in out.chunks_exact_mut(g.out_w).enumerate() {
        let (r0, r1) = (g.row_start[oy], g.row_start[oy + 1]);
        // Pass 1: sum the box's source rows column by column (vectorises well).
        let first = &src[r0 * stride..r0 * stride + in_w];
        for (a, &p) in acc.iter_mut().zip(first) {
            *a = u16::from(p);
        }
        for r in r0 + 1..r1 {
            let row = &src[r * stride..r * stride + in_w];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += u16::from(p);
            }
        }
        // Pass 2: sum each box's columns of that line.
        let inv_rows = 1.0 / (r1 - r0) as f32;
        let uniform = g.col_start[1];
        if in_w == uniform * g.out_w {
            // Equal boxes (640, 1280, 1920 → 320): a fixed-width sum the compiler unrolls.
            let scale = g.inv_cols[0] * inv_rows;
            match uniform {
                1 => sum_boxes::<1>(acc, out_row, scale),
                2 => sum_boxes::<2>(acc, out_row, scale),
                3 => sum_boxes::<3>(acc, out_row, scale),
                4 => sum_boxes::<4>(acc, out_row, scale),
                6 => sum_boxes::<6>(acc, out_row, scale),
                8 => sum_boxes::<8>(acc, out_row, scale),
                _ => sum_uneven_boxes(g, acc, out_row, inv_rows),
            }
        } else {
            // Boxes are floor(in_w / out_w) or one more columns wide (768 → 320: 2 or 3).
            match in_w / g.out_w {
                1 => sum_uneven_boxes_of::<1>(g, acc, out_row, inv_rows),
                2 => sum_uneven_boxes_of::<2>(g, acc, out_row, inv_rows),
                3 => sum_uneven_boxes_of::<3>(g, acc, out_row, inv_rows),
                4 => sum_uneven_boxes_of::<4>(g, acc, out_row, inv_rows),
                5 => sum_uneven_boxes_of::<5>(g, acc, out_row, inv_rows),
                _ => sum_uneven_boxes(g, acc, out_row, inv_rows),
            }
        }
    }
}

/// Pass 2 for boxes `K` columns wide: `out[x] = sum(acc[K*x .. K*x + K]) * scale`.
fn sum_boxes<const K: usize>(acc: &[u16], out: &mut [u8], scale: f32) {
    for (o, c) in out.iter_mut().zip(acc.chunks_exact(K)) {
        let sum: u32 = c.iter().map(|&v| u32::from(v)).sum();
        *o = average(sum, scale);
    }
}

/// A box's sum times 1 / (its pixels), rounded: 0-255.
#[inline]
fn average(sum: u32, scale: f32) -> u8 {
    // The float-to-int cast saturates; the average of 8-bit samples is at most 255.
    (sum as f32 * scale + 0.5) as u8
}

/// Pass 2 for boxes `K` or `K + 1` columns wide: a fixed-width sum plus at most one column.
fn sum_uneven_boxes_of<const K: usize>(g: &Geometry, acc: &[u16], out: &mut [u8], inv_rows: f32) {
    let cols = g.col_start.windows(2).zip(&g.inv_cols);
    for (o, (c, inv_cols)) in out.iter_mut().zip(cols) {
        let b = &acc[c[0]..c[1]];
        let sum = match b.split_first_chunk::<K>() {
            Some((head, tail)) => {
                head.iter().map(|&v| u32::from(v)).sum::<u32>() + tail.iter().map(|&v| u32::from(v)).sum::<u32>()
            }
            // Not reached (boxes are at least K wide); the plain sum stays correct anyway.
            None => b.iter().map(|&v| u32::from(v)).sum(),
        };
        *o = average(sum, inv_cols * inv_rows);
    }
}

/// Pass 2 for boxes of varying width (the input width is not a multiple of the output's).
fn sum_uneven_boxes(g: &Geometry, acc: &[u16], out: &mut [u8], inv_rows: f32) {
    let cols = g.col_start.windows(2).zip(&g.inv_cols);
    for (o, (c, inv_cols)) in out.iter_mut().zip(cols) {
        let sum: u32 = acc[c[0]..c[1]].iter().map(|&v| u32::from(v)).sum();
        *o = average(sum, inv_cols * inv_rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscale_averages_boxes_and_honours_the_stride() {
        // 4x2 → 2x1 with a padded stride of 6.
        let src = [10, 20, 30, 50, 99, 99, 30, 40, 70, 90, 99, 99];
        let g = Geometry::new(4, 2, 2);
        assert_eq!((g.out_w, g.out_h), (2, 1));
        let mut acc = vec![0u16; 4];
        let mut out = vec![0u8; 2];
        box_downscale(&g, &src, 6, &mut acc, &mut out);
        assert_eq!(out, [25, 60]);
    }

    #[test]
    fn downscale_keeps_the_aspect_and_handles_uneven_boxes() {
        let g = Geometry::new(1920, 1080, 320);
        assert_eq!((g.out_w, g.out_h), (320, 180));
        let g = Geometry::new(768, 576, 320);
        assert_eq!((g.out_w, g.out_h), (320, 240));
        // Never upscales.
        let g = Geometry::new(160, 120, 320);
        assert_eq!((g.out_w, g.out_h), (160, 120));
        // 5 columns into 2: boxes of 2 and 3 columns; 3 rows into 1.
        let g = Geometry::new(5, 3, 2);
        assert_eq!(g.col_start, [0, 2, 5]);
        let src: Vec<u8> = (0..15).map(|i| i * 10).collect();
        let mut acc = vec![0u16; 5];
        let mut out = vec![0u8; g.pixels()];
        box_downscale(&g, &src, 5, &mut acc, &mut out);
        // Column 0-1 of rows 0-2: 0,10,50,60,100,110 → 55; columns 2-4: 20..140 → 80.
        assert_eq!(out.len(), 2);
        assert_eq!(out, [55, 80]);
        // A constant 255 plane over the largest box stays 255 (no u16 overflow).
        let g = Geometry::new(4096, 2160, 8);
        assert!(g.col_start.windows(2).all(|w| w[1] - w[0] <= MAX_BOX as usize));
        assert!(g.row_start.windows(2).all(|w| w[1] - w[0] <= MAX_BOX as usize));
        let src = vec![255u8; 4096 * 2160];
        let mut acc = vec![0u16; 4096];
        let mut out = vec![0u8; g.pixels()];
        box_downscale(&g, &src, 4096, &mut acc, &mut out);
        assert!(out.iter().all(|&v| v == 255));
    }

    #[test]
    fn downscale_matches_a_naive_box_filter() {
        for (w, h, stride) in
            [(640usize, 360usize, 640usize), (1280, 720, 1296), (1920, 1080, 1920), (768, 576, 800), (50, 30, 50)]
        {
            let src: Vec<u8> = (0..stride * h).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            let g = Geometry::new(w as u32, h as u32, 320);
            let mut acc = vec![0u16; w];
            let mut out = vec![0u8; g.pixels()];
            box_downscale(&g, &src, stride, &mut acc, &mut out);
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let (r0, r1, c0, c1) = (g.row_start[oy], g.row_start[oy + 1], g.col_start[ox], g.col_start[ox + 1]);
                    let sum: u32 = (r0..r1)
                        .flat_map(|r| (c0..c1).map(move |c| (r, c)))
                        .map(|(r, c)| u32::from(src[r * stride + c]))
                        .sum();
                    let naive = sum as f32 / ((r1 - r0) * (c1 - c0)) as f32;
                    let got = out[oy * g.out_w + ox];
                    assert_eq!(got, naive.round() as u8, "{w}x{h} at ({ox},{oy}): {got} vs {naive}");
                }
            }
        }
    }
}
