//! RGB resizing (fast_image_resize: SIMD, separable filters) and JPEG encoding.

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};

use super::{Jpeg, MediaError, RgbFrame};

/// How to resample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeQuality {
    /// Plain bilinear interpolation, as OpenCV's `INTER_LINEAR` (what detectors are
    /// trained with); the fastest.
    Bilinear,
    /// Hamming-windowed convolution: antialiased downscaling for pictures people look at.
    Smooth,
}

/// A reusable resizer for packed 8-bit RGB images (keeps its scratch buffers).
pub struct RgbResizer {
    resizer: Resizer,
    options: ResizeOptions,
}

impl RgbResizer {
    pub fn new(quality: ResizeQuality) -> Self {
        let algorithm = match quality {
            ResizeQuality::Bilinear => ResizeAlg::Interpolation(FilterType::Bilinear),
            ResizeQuality::Smooth => ResizeAlg::Convolution(FilterType::Hamming),
        };
        Self { resizer: Resizer::new(), options: ResizeOptions::new().resize_alg(algorithm) }
    }

    /// Resizes `src` (`src_w` x `src_h` RGB) into `dst`, which is resized to
    /// `dst_w * dst_h * 3` bytes.
    pub fn resize(
        &mut self,
        src: &[u8],
        src_w: u32,
        src_h: u32,
        dst: &mut Vec<u8>,
        dst_w: u32,
        dst_h: u32,
    ) -> Result<(), MediaError> {
        let src_len = src_w as usize * src_h as usize * 3;
        if src.len() != src_len || src_w == 0 || src_h == 0 || dst_w == 0 || dst_h == 0 {
            return Err(MediaError::Resize(format!(
                "bad sizes: source {src_w}x{src_h} with {} bytes, destination {dst_w}x{dst_h}",
                src.len()
            )));
        }
        dst.resize(dst_w as usize * dst_h as usize * 3, 0);
        if src_w == dst_w && src_h == dst_h {
            dst.copy_from_slice(src);
            return Ok(());
        }
        // Typed (RGB only): the untyped API instantiates every pixel type's
        // SIMD code, about 2 MB of binary.
        let src_image =
            TypedImageRef::<U8x3>::from_buffer(src_w, src_h, src).map_err(|e| MediaError::Resize(e.to_string()))?;
        let mut dst_image = TypedImage::<U8x3>::from_buffer(dst_w, dst_h, dst.as_mut_slice())
            .map_err(|e| MediaError::Resize(e.to_string()))?;
        self.resizer
            .resize_typed(&src_image, &mut dst_image, &self.options)
            .map_err(|e| MediaError::Resize(e.to_string()))
    }
}

/// Scales `frame` to `width` x `height` (antialiased).
pub fn resize_rgb(frame: &RgbFrame, width: u32, height: u32) -> Result<RgbFrame, MediaError> {
    let mut data = Vec::new();
    RgbResizer::new(ResizeQuality::Smooth).resize(&frame.data, frame.width, frame.height, &mut data, width, height)?;
    Ok(RgbFrame { ts_s: frame.ts_s, width, height, data })
}

/// The size that fits `width` x `height` into `max_size` on its longer side,
/// keeping the aspect ratio (unchanged when it already fits or `max_size` is 0).
pub fn fit_within(width: u32, height: u32, max_size: u32) -> (u32, u32) {
    let longer = width.max(height);
    if max_size == 0 || longer <= max_size {
        return (width, height);
    }
    let scale = f64::from(max_size) / f64::from(longer);
    let w = ((f64::from(width) * scale).round() as u32).clamp(1, max_size);
    let h = ((f64::from(height) * scale).round() as u32).clamp(1, max_size);
    (w, h)
}

pub(crate) fn encode_jpeg_impl(frame: &RgbFrame, max_size: u32, quality: u8) -> Result<Jpeg, MediaError> {
    frame.check().map_err(MediaError::Jpeg)?;
    let (w, h) = fit_within(frame.width, frame.height, max_size);
    let scaled;
    let pixels: &[u8] = if (w, h) == (frame.width, frame.height) {
        &frame.data
    } else {
        scaled = resize_rgb(frame, w, h)?;
        &scaled.data
    };
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(MediaError::Jpeg(format!("{w}x{h} is too large for JPEG")));
    };
    let mut bytes = Vec::with_capacity(pixels.len() / 8);
    let encoder = jpeg_encoder::Encoder::new(&mut bytes, quality.clamp(1, 100));
    encoder.encode(pixels, w16, h16, jpeg_encoder::ColorType::Rgb).map_err(|e| MediaError::Jpeg(e.to_string()))?;
    Ok(Jpeg { ts_s: frame.ts_s, width: w, height: h, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_within_keeps_the_aspect_ratio() {
        assert_eq!(fit_within(768, 576, 1280), (768, 576));
        assert_eq!(fit_within(1920, 1080, 1280), (1280, 720));
        assert_eq!(fit_within(1080, 1920, 640), (360, 640));
        assert_eq!(fit_within(100, 50, 0), (100, 50));
        assert_eq!(fit_within(4000, 1, 100), (100, 1));
    }

    #[test]
    fn resize_and_encode_a_gradient() {
        let (w, h) = (64u32, 48u32);
        let data = (0..w * h).flat_map(|i| [(i % w * 4) as u8, (i / w * 5) as u8, 128]).collect();
        let frame = RgbFrame { ts_s: 1.5, width: w, height: h, data };
        let small = resize_rgb(&frame, 32, 24).unwrap();
        assert_eq!(small.data.len(), 32 * 24 * 3);
        let jpeg = encode_jpeg_impl(&frame, 32, 80).unwrap();
        assert_eq!((jpeg.width, jpeg.height, jpeg.ts_s), (32, 24, 1.5));
        assert_eq!(&jpeg.bytes[..2], &[0xFF, 0xD8]);
        assert_eq!(&jpeg.bytes[jpeg.bytes.len() - 2..], &[0xFF, 0xD9]);
    }

    #[test]
    fn a_short_buffer_is_an_error_not_a_panic() {
        let frame = RgbFrame { ts_s: 0.0, width: 10, height: 10, data: vec![0; 10] };
        assert!(matches!(encode_jpeg_impl(&frame, 0, 80), Err(MediaError::Jpeg(_))));
        assert!(matches!(resize_rgb(&frame, 5, 5), Err(MediaError::Resize(_))));
    }
}
