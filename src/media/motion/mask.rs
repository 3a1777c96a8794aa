//! Mask polygons rasterised onto the analysis grid.

/// Marks with `value` the pixels of a `w` x `h` grid whose centres lie inside
/// `polygon` (normalised coordinates, even-odd rule).
pub(crate) fn rasterize_polygon(polygon: &[[f32; 2]], w: usize, h: usize, grid: &mut [u8], value: u8) {
    if polygon.len() < 3 || w == 0 || h == 0 {
        return;
    }
    let mut crossings: Vec<f32> = Vec::with_capacity(polygon.len());
    for y in 0..h {
        let py = (y as f32 + 0.5) / h as f32;
        crossings.clear();
        for (i, a) in polygon.iter().enumerate() {
            let b = polygon[(i + 1) % polygon.len()];
            let (ax, ay, bx, by) = (a[0], a[1], b[0], b[1]);
            if (ay > py) != (by > py) {
                crossings.push(ax + (py - ay) * (bx - ax) / (by - ay));
            }
        }
        crossings.sort_by(f32::total_cmp);
        let row = &mut grid[y * w..(y + 1) * w];
        for pair in crossings.chunks_exact(2) {
            // Pixel x is inside when its centre (x + 0.5) / w lies in [pair[0], pair[1]).
            let first = ((pair[0] * w as f32 - 0.5).ceil().max(0.0) as usize).min(w);
            let end = ((pair[1] * w as f32 - 0.5).ceil().max(0.0) as usize).min(w);
            if first < end {
                row[first..end].fill(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_of(polygon: &[[f32; 2]], w: usize, h: usize) -> Vec<u8> {
        let mut grid = vec![0u8; w * h];
        rasterize_polygon(polygon, w, h, &mut grid, 1);
        grid
    }

    fn rows(grid: &[u8], w: usize) -> Vec<String> {
        grid.chunks(w).map(|r| r.iter().map(|&v| if v == 1 { '#' } else { '.' }).collect()).collect()
    }

    #[test]
    fn rasterizes_a_centred_square() {
        let g = grid_of(&[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]], 8, 8);
        let expected = ["........", "........", "..####..", "..####..", "..####..", "..####..", "........", "........"];
        assert_eq!(rows(&g, 8), expected);
    }

    #[test]
    fn rasterizes_the_whole_frame_and_nothing_outside() {
        let full = grid_of(&[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], 13, 7);
        assert!(full.iter().all(|&v| v == 1));
        // A sliver that covers no pixel centre.
        let sliver = grid_of(&[[0.0, 0.0], [0.01, 0.0], [0.01, 1.0], [0.0, 1.0]], 10, 10);
        assert!(sliver.iter().all(|&v| v == 0));
        // Degenerate polygons mark nothing.
        assert!(grid_of(&[[0.0, 0.0], [1.0, 1.0]], 4, 4).iter().all(|&v| v == 0));
    }

    #[test]
    fn rasterizes_a_triangle_with_the_right_area() {
        // Lower-left half of the picture: about half the pixels, all below the diagonal.
        let (w, h) = (100, 100);
        let g = grid_of(&[[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]], w, h);
        let count = g.iter().filter(|&&v| v == 1).count();
        assert!((4900..=5100).contains(&count), "{count}");
        for y in 0..h {
            for x in 0..w {
                if g[y * w + x] == 1 {
                    assert!(x <= y, "({x},{y}) is above the diagonal");
                }
            }
        }
        // Vertex order does not matter; a concave polygon (an L shape) is filled correctly.
        let l = grid_of(&[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], 4, 4);
        assert_eq!(rows(&l, 4), ["##..", "##..", "####", "####"]);
    }
}
