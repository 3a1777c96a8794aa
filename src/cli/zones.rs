//! `homesec zones --camera NAME`: a picture of the camera with its zones and
//! motion masks drawn, to set them up without a UI. Zones are tinted in their
//! own colour and labelled with their name (and the classes they care about);
//! masks are darkened and labelled `mask N`.

use std::fmt::Write as _;

use crate::media::overlay::{PALETTE, draw_polygon, draw_text};
use crate::media::{MediaError, RgbFrame};

/// One polygon to draw, in normalised coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Outline {
    pub label: String,
    pub points: Vec<[f32; 2]>,
    /// A motion mask (darkened) rather than a zone (tinted in its colour).
    pub mask: bool,
}

/// Draws `outlines` on `frame` and returns the legend a user reads next to it.
pub fn render(frame: &mut RgbFrame, outlines: &[Outline]) -> String {
    // Labels grow with the picture so they stay readable on 1080p and 360p alike.
    let scale = (frame.width.max(frame.height) / 480).max(1);
    let thickness = scale + 1;
    let mut legend = format!("{}x{} picture\n", frame.width, frame.height);
    let mut colours = PALETTE.iter().cycle();
    for o in outlines {
        let colour = if o.mask { [40, 40, 40] } else { colours.next().copied().unwrap_or([255, 255, 255]) };
        draw_polygon(frame, &o.points, colour, if o.mask { 0.6 } else { 0.3 }, thickness);
        // The label sits at the polygon's top-most corner, inside the picture.
        if let Some(top) = o.points.iter().min_by(|a, b| a[1].total_cmp(&b[1]).then(a[0].total_cmp(&b[0]))) {
            let x = (top[0].clamp(0.0, 1.0) * frame.width as f32) as i64 + i64::from(thickness) + 2;
            let y = (top[1].clamp(0.0, 1.0) * frame.height as f32) as i64 + i64::from(thickness) + 2;
            let text_colour = if o.mask { [255, 255, 255] } else { colour };
            draw_text(frame, x, y, &o.label, text_colour, scale);
        }
        let kind = if o.mask { "mask" } else { "zone" };
        let corners: Vec<String> = o.points.iter().map(|p| format!("[{:.3}, {:.3}]", p[0], p[1])).collect();
        let _ = writeln!(legend, "{kind:<5} {:<24} {}", o.label, corners.join(" "));
    }
    if outlines.is_empty() {
        legend.push_str("no zones and no motion masks configured for this camera\n");
    }
    legend
}

/// Decodes a JPEG into RGB.
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbFrame, MediaError> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let data = decoder.decode().map_err(|e| MediaError::Jpeg(format!("cannot decode: {e}")))?;
    let (width, height) = decoder.dimensions().ok_or_else(|| MediaError::Jpeg("no picture size".into()))?;
    let frame = RgbFrame { ts_s: 0.0, width: width as u32, height: height as u32, data };
    frame.check().map_err(MediaError::Jpeg)?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_masks_are_drawn_and_listed() {
        let mut frame = RgbFrame { ts_s: 0.0, width: 200, height: 100, data: vec![128; 200 * 100 * 3] };
        let outlines = [
            Outline {
                label: "driveway (person, car)".into(),
                points: vec![[0.0, 0.5], [0.5, 0.5], [0.5, 1.0]],
                mask: false,
            },
            Outline {
                label: "mask 1".into(),
                points: vec![[0.6, 0.0], [1.0, 0.0], [1.0, 0.4], [0.6, 0.4]],
                mask: true,
            },
        ];
        let legend = render(&mut frame, &outlines);
        assert!(legend.contains("zone  driveway (person, car)"), "{legend}");
        assert!(legend.contains("mask  mask 1"), "{legend}");
        assert!(legend.contains("[0.500, 0.500]"), "the corners, as in the config: {legend}");
        let px = |x: usize, y: usize| &frame.data[(y * 200 + x) * 3..(y * 200 + x) * 3 + 3];
        assert!(px(190, 30)[0] < 128, "the mask is darkened: {:?}", px(190, 30));
        assert_ne!(px(60, 60), [128, 128, 128], "the zone is tinted");
        assert_eq!(px(150, 80), [128, 128, 128], "outside both");
        assert!(render(&mut frame, &[]).contains("no zones"));
    }

    #[test]
    fn a_jpeg_decodes_to_its_picture_and_garbage_is_an_error() {
        let frame = RgbFrame { ts_s: 0.0, width: 64, height: 48, data: vec![200; 64 * 48 * 3] };
        let jpeg = crate::media::encode_jpeg(&frame, 0, 90).unwrap();
        let back = decode_jpeg(&jpeg.bytes).unwrap();
        assert_eq!((back.width, back.height), (64, 48));
        assert!(back.data.iter().all(|v| v.abs_diff(200) < 8));
        assert!(decode_jpeg(b"not a jpeg").is_err());
    }
}
