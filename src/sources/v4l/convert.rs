//! Pixel formats of USB cameras to I420 (planar 4:2:0), the encoder's input and
//! the motion detector's luma plane.

use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("a {format} frame of {got} bytes is too short for {width}x{height} (needs {need})")]
    ShortFrame { format: &'static str, width: u32, height: u32, got: usize, need: usize },
    #[error("the frame size {width}x{height} is not usable (at least 2x2, at most 8192x8192)")]
    BadSize { width: u32, height: u32 },
    #[error("MJPEG frame cannot be decoded: {0}")]
    Jpeg(String),
}

/// A picture in I420: the Y plane, then U and V at half resolution, rows packed
/// tightly. Width and height are even (an odd last column/row is cropped).
#[derive(Debug, Clone, Default)]
pub struct I420Frame {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

const MAX_SIDE: u32 = 8192;

impl I420Frame {
    /// Sizes the frame for `width` x `height` (rounded down to even), reusing the
    /// allocation. The contents are unspecified until written.
    pub fn reset(&mut self, width: u32, height: u32) {
        self.width = width & !1;
        self.height = height & !1;
        let luma = self.width as usize * self.height as usize;
        self.data.resize(luma + luma / 2, 0);
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    fn luma_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The Y, U and V planes (strides `width`, `width / 2`, `width / 2`).
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let (y, uv) = self.data.split_at(self.luma_len());
        let (u, v) = uv.split_at(self.luma_len() / 4);
        (y, u, v)
    }

    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let n = self.luma_len();
        let (y, uv) = self.data.split_at_mut(n);
        let (u, v) = uv.split_at_mut(n / 4);
        (y, u, v)
    }

    /// The luma plane (the picture in grayscale); its stride is `width`.
    pub fn luma(&self) -> &[u8] {
        self.planes().0
    }
}

fn check_size(width: u32, height: u32) -> Result<(), ConvertError> {
    if width < 2 || height < 2 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ConvertError::BadSize { width, height });
    }
    Ok(())
}

/// Packed YUYV 4:2:2 (`Y0 U Y1 V`, what UVC cameras send uncompressed) to I420:
/// luma copied, chroma averaged over each pair of rows. `stride` is the bytes per
/// row of the source (at least `2 * width`).
pub fn yuyv_to_i420(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    dst: &mut I420Frame,
) -> Result<(), ConvertError> {
    check_size(width, height)?;
    let stride = stride.max(width as usize * 2);
    let need = stride * (height as usize - 1) + width as usize * 2;
    if src.len() < need {
        return Err(ConvertError::ShortFrame { format: "YUYV", width, height, got: src.len(), need });
    }
    dst.reset(width, height);
    let w = dst.width() as usize;
    let (cw, rows) = (w / 2, dst.height() as usize / 2);
    let (y, u, v) = dst.planes_mut();
    let pairs = y.chunks_exact_mut(2 * w).zip(u.chunks_exact_mut(cw)).zip(v.chunks_exact_mut(cw));
    for (row, ((y2, ur), vr)) in pairs.enumerate().take(rows) {
        let top = &src[2 * row * stride..][..2 * w];
        let bottom = &src[(2 * row + 1) * stride..][..2 * w];
        let (ya, yb) = y2.split_at_mut(w);
        let pixels = ya
            .chunks_exact_mut(2)
            .zip(yb.chunks_exact_mut(2))
            .zip(ur.iter_mut().zip(vr.iter_mut()))
            .zip(top.chunks_exact(4).zip(bottom.chunks_exact(4)));
        for (((ya, yb), (u, v)), (a, b)) in pixels {
            ya[0] = a[0];
            ya[1] = a[2];
            yb[0] = b[0];
            yb[1] = b[2];
            *u = ((u16::from(a[1]) + u16::from(b[1]) + 1) >> 1) as u8;
            *v = ((u16::from(a[3]) + u16::from(b[3]) + 1) >> 1) as u8;
        }
    }
    Ok(())
}

/// Interleaved YCbCr 4:4:4 (`Y Cb Cr` per pixel) to I420, chroma averaged over
/// each 2x2 block.
pub fn ycbcr444_to_i420(src: &[u8], width: u32, height: u32, dst: &mut I420Frame) -> Result<(), ConvertError> {
    check_size(width, height)?;
    let row_bytes = width as usize * 3;
    let need = row_bytes * height as usize;
    if src.len() < need {
        return Err(ConvertError::ShortFrame { format: "YCbCr", width, height, got: src.len(), need });
    }
    dst.reset(width, height);
    let w = dst.width() as usize;
    let (cw, rows) = (w / 2, dst.height() as usize / 2);
    let (y, u, v) = dst.planes_mut();
    let pairs = y.chunks_exact_mut(2 * w).zip(u.chunks_exact_mut(cw)).zip(v.chunks_exact_mut(cw));
    for (row, ((y2, ur), vr)) in pairs.enumerate().take(rows) {
        let top = &src[2 * row * row_bytes..][..w * 3];
        let bottom = &src[(2 * row + 1) * row_bytes..][..w * 3];
        let (ya, yb) = y2.split_at_mut(w);
        let pixels = ya
            .chunks_exact_mut(2)
            .zip(yb.chunks_exact_mut(2))
            .zip(ur.iter_mut().zip(vr.iter_mut()))
            .zip(top.chunks_exact(6).zip(bottom.chunks_exact(6)));
        for (((ya, yb), (u, v)), (a, b)) in pixels {
            ya[0] = a[0];
            ya[1] = a[3];
            yb[0] = b[0];
            yb[1] = b[3];
            let cb = u16::from(a[1]) + u16::from(a[4]) + u16::from(b[1]) + u16::from(b[4]);
            let cr = u16::from(a[2]) + u16::from(a[5]) + u16::from(b[2]) + u16::from(b[5]);
            *u = ((cb + 2) >> 2) as u8;
            *v = ((cr + 2) >> 2) as u8;
        }
    }
    Ok(())
}

/// Whether a JPEG ends with its EOI marker (`FF D9`), allowing the zero padding
/// and few stray bytes some cameras leave after it.
fn has_end_marker(jpeg: &[u8]) -> bool {
    let end = jpeg.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let tail = &jpeg[end.saturating_sub(64)..end];
    jpeg.starts_with(&[0xff, 0xd8]) && tail.windows(2).any(|w| w == [0xff, 0xd9])
}

/// Decodes MJPEG frames (baseline JPEG, possibly without Huffman tables, as
/// many UVC cameras send them) to I420, reusing its buffers.
#[derive(Debug, Default)]
pub struct MjpegDecoder {
    ycbcr: Vec<u8>,
}

impl MjpegDecoder {
    /// Decodes one frame into `dst`; returns its size. A frame cut short (no
    /// end-of-image marker, as after a USB transfer error) is an error: the
    /// decoder would otherwise fill the missing part with grey.
    pub fn decode(&mut self, jpeg: &[u8], dst: &mut I420Frame) -> Result<(u32, u32), ConvertError> {
        if !has_end_marker(jpeg) {
            return Err(ConvertError::Jpeg(format!(
                "the frame is cut short ({} bytes, no end-of-image marker)",
                jpeg.len()
            )));
        }
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::YCbCr)
            .set_max_width(MAX_SIDE as usize)
            .set_max_height(MAX_SIDE as usize);
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
        decoder.decode_headers().map_err(|e| ConvertError::Jpeg(e.to_string()))?;
        let info = decoder.info().ok_or_else(|| ConvertError::Jpeg("no frame header".into()))?;
        let (width, height) = (u32::from(info.width), u32::from(info.height));
        check_size(width, height)?;
        let grayscale = info.components == 1;
        if grayscale {
            decoder.set_options(options.jpeg_set_out_colorspace(ColorSpace::Luma));
        }
        let size = decoder.output_buffer_size().ok_or_else(|| ConvertError::Jpeg("no frame header".into()))?;
        self.ycbcr.resize(size, 0);
        decoder.decode_into(&mut self.ycbcr).map_err(|e| ConvertError::Jpeg(e.to_string()))?;
        if grayscale {
            // One component: the luma plane as is, neutral chroma.
            dst.reset(width, height);
            let w = dst.width() as usize;
            let (y, u, v) = dst.planes_mut();
            for (out, row) in y.chunks_exact_mut(w).zip(self.ycbcr.chunks(width as usize)) {
                out.copy_from_slice(&row[..w]);
            }
            u.fill(128);
            v.fill(128);
            return Ok((dst.width(), dst.height()));
        }
        ycbcr444_to_i420(&self.ycbcr, width, height, dst)?;
        Ok((dst.width(), dst.height()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_becomes_i420_with_averaged_chroma() {
        // 4x2: row 0 U=10/V=20 and 30/40, row 1 U=20/V=40 and 50/60.
        let src = [
            1, 10, 2, 20, 3, 30, 4, 40, //
            5, 20, 6, 40, 7, 50, 8, 60,
        ];
        let mut f = I420Frame::default();
        yuyv_to_i420(&src, 4, 2, 8, &mut f).unwrap();
        let (y, u, v) = f.planes();
        assert_eq!(y, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(u, [15, 40]);
        assert_eq!(v, [30, 50]);
    }

    #[test]
    fn yuyv_honours_the_stride_and_crops_odd_sizes() {
        // 3x3 with 8 bytes per row (2 bytes padding): cropped to 2x2.
        let mut src = vec![0u8; 8 * 3];
        for row in 0..3 {
            src[row * 8..row * 8 + 6].copy_from_slice(&[row as u8 * 10, 100, row as u8 * 10 + 1, 200, 99, 99]);
        }
        let mut f = I420Frame::default();
        yuyv_to_i420(&src, 3, 3, 8, &mut f).unwrap();
        assert_eq!((f.width(), f.height()), (2, 2));
        assert_eq!(f.planes(), (&[0, 1, 10, 11][..], &[100][..], &[200][..]));
    }

    #[test]
    fn short_or_empty_frames_are_errors_not_panics() {
        let mut f = I420Frame::default();
        let err = yuyv_to_i420(&[0; 10], 4, 2, 8, &mut f).unwrap_err();
        assert!(err.to_string().contains("needs 16"), "{err}");
        assert!(yuyv_to_i420(&[], 0, 0, 0, &mut f).is_err());
        assert!(ycbcr444_to_i420(&[0; 5], 2, 2, &mut f).is_err());
        assert!(MjpegDecoder::default().decode(&[0xff, 0xd8, 0xff], &mut f).is_err());
        assert!(MjpegDecoder::default().decode(b"not a jpeg", &mut f).is_err());
        assert!(has_end_marker(&[0xff, 0xd8, 1, 2, 0xff, 0xd9, 0, 0, 0]));
        assert!(!has_end_marker(&[0xff, 0xd8, 1, 2, 3]));
    }

    #[test]
    fn mjpeg_decodes_to_the_encoded_picture() {
        // A horizontal luma ramp with flat colour, through jpeg-encoder (4:2:0).
        let (w, h) = (64u16, 48u16);
        let mut rgb = Vec::new();
        for _y in 0..h {
            for x in 0..w {
                let l = (x * 4) as u8;
                rgb.extend_from_slice(&[l, l, l]);
            }
        }
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 95).encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
        let mut f = I420Frame::default();
        let err = MjpegDecoder::default().decode(&jpeg[..jpeg.len() / 2], &mut f).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
        assert_eq!(MjpegDecoder::default().decode(&jpeg, &mut f).unwrap(), (64, 48));
        let (y, u, v) = f.planes();
        for (x, &l) in y[10 * 64..11 * 64].iter().enumerate() {
            assert!((i32::from(l) - (x as i32 * 4)).abs() <= 4, "x={x}: {l}");
        }
        assert!(u.iter().chain(v).all(|c| (i32::from(*c) - 128).abs() <= 3));
    }
}
