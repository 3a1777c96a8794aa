//! The device half of the USB source, kept thin: open a V4L2 device, negotiate
//! format / size / frame rate, stream mmap buffers and lend each one (bytes,
//! timestamp, format) to a callback. Everything else is in [`super::processor`],
//! which is tested without a device.

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use v4l::buffer::Type;
use v4l::capability::Flags as CapFlags;
use v4l::framesize::FrameSizeEnum;
use v4l::io::traits::CaptureStream;
use v4l::prelude::*;
use v4l::video::Capture;
use v4l::video::capture::Parameters;
use v4l::{Format, FourCC};

use super::PixelFormat;
use super::processor::CapturedFrame;

/// mmap buffers queued with the driver.
const BUFFERS: u32 = 4;
/// How long one wait for a buffer may block (the stop flag is checked in between).
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "video device {device} does not exist (is the USB camera plugged in? `v4l2-ctl --list-devices` lists them)"
    )]
    Missing { device: String },
    #[error("no permission to open {device} (run the daemon as a member of the `video` group, or fix the udev rule)")]
    PermissionDenied { device: String },
    #[error("cannot open video device {device}")]
    Open {
        device: String,
        #[source]
        source: io::Error,
    },
    #[error("{device} is not a V4L2 video device")]
    NotV4l2 { device: String },
    #[error("{device} ({card}) is not a video capture device with streaming I/O")]
    NotCapture { device: String, card: String },
    #[error("{device} ({card}) cannot capture {wanted}; it supports: {supported}")]
    Unsupported { device: String, card: String, wanted: PixelFormat, supported: String },
    #[error("{device}: {what} failed")]
    Ioctl {
        device: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{device} delivered no frame for {secs:.1} s")]
    Stalled { device: String, secs: f64 },
    #[error("{device} was disconnected")]
    Disconnected {
        device: String,
        #[source]
        source: io::Error,
    },
}

impl CaptureError {
    /// Errors a retry is unlikely to fix soon (the log says so once; retries are slow).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::Missing { .. }
                | Self::PermissionDenied { .. }
                | Self::NotV4l2 { .. }
                | Self::NotCapture { .. }
                | Self::Unsupported { .. }
        )
    }
}

/// What the source asks the device for.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSpec {
    pub device: PathBuf,
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// What the device agreed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub card: String,
    pub driver: String,
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Bytes per row (raw formats).
    pub stride: usize,
    pub fps: f64,
}

pub fn fourcc(format: PixelFormat) -> FourCC {
    match format {
        PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
        PixelFormat::Yuyv => FourCC::new(b"YUYV"),
        PixelFormat::H264 => FourCC::new(b"H264"),
    }
}

fn show(device: &Path) -> String {
    device.display().to_string()
}

/// Opens the device and sets format, size and frame rate.
pub fn open(spec: &CaptureSpec) -> Result<(Device, Negotiated), CaptureError> {
    let device = show(&spec.device);
    if !spec.device.exists() {
        return Err(CaptureError::Missing { device });
    }
    let dev = Device::with_path(&spec.device).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => CaptureError::Missing { device: device.clone() },
        io::ErrorKind::PermissionDenied => CaptureError::PermissionDenied { device: device.clone() },
        _ => CaptureError::Open { device: device.clone(), source },
    })?;
    let caps = dev.query_caps().map_err(|source| match source.raw_os_error() {
        // ENOTTY: the file does not understand V4L2 ioctls.
        Some(25) => CaptureError::NotV4l2 { device: device.clone() },
        _ => CaptureError::Ioctl { device: device.clone(), what: "VIDIOC_QUERYCAP", source },
    })?;
    let card = caps.card.clone();
    if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE | CapFlags::STREAMING) {
        return Err(CaptureError::NotCapture { device, card });
    }
    let wanted = fourcc(spec.format);
    let formats = dev.enum_formats().map_err(|source| CaptureError::Ioctl {
        device: device.clone(),
        what: "VIDIOC_ENUM_FMT",
        source,
    })?;
    if !formats.iter().any(|f| f.fourcc == wanted) {
        return Err(CaptureError::Unsupported {
            device,
            card,
            wanted: spec.format,
            supported: supported_formats(&dev),
        });
    }
    let requested = Format::new(spec.width, spec.height, wanted);
    let got = dev.set_format(&requested).map_err(|source| CaptureError::Ioctl {
        device: device.clone(),
        what: "VIDIOC_S_FMT",
        source,
    })?;
    if got.fourcc != wanted {
        return Err(CaptureError::Unsupported {
            device,
            card,
            wanted: spec.format,
            supported: supported_formats(&dev),
        });
    }
    if (got.width, got.height) != (spec.width, spec.height) {
        warn!(
            device = %device, requested = %format!("{}x{}", spec.width, spec.height), got = %format!("{}x{}", got.width, got.height),
            supported = %supported_formats(&dev), "the camera does not offer the configured size; using the nearest it offers"
        );
    }
    let fps = match dev.set_params(&Parameters::with_fps(spec.fps)) {
        Ok(p) if p.interval.numerator > 0 && p.interval.denominator > 0 => {
            f64::from(p.interval.denominator) / f64::from(p.interval.numerator)
        }
        Ok(_) => f64::from(spec.fps),
        Err(e) => {
            warn!(device = %device, error = %e, fps = spec.fps, "cannot set the frame rate; using the camera's default");
            f64::from(spec.fps)
        }
    };
    if (fps - f64::from(spec.fps)).abs() > 0.5 {
        warn!(device = %device, requested = spec.fps, got = fps, "the camera does not offer the configured frame rate");
    }
    let negotiated = Negotiated {
        card,
        driver: caps.driver.clone(),
        format: spec.format,
        width: got.width,
        height: got.height,
        stride: got.stride as usize,
        fps,
    };
    info!(device = %device, card = %negotiated.card, driver = %negotiated.driver, format = %spec.format,
        width = got.width, height = got.height, fps, "video device opened");
    Ok((dev, negotiated))
}

/// "MJPG 1920x1080 1280x720 …, YUYV 640x480 …": what the device offers, for errors.
pub fn supported_formats(dev: &Device) -> String {
    let Ok(formats) = dev.enum_formats() else { return "(cannot list formats)".into() };
    let list: Vec<String> = formats
        .iter()
        .map(|f| {
            let name = f.fourcc.str().map(str::to_owned).unwrap_or_else(|_| format!("{:?}", f.fourcc.repr));
            let sizes: Vec<String> = dev
                .enum_framesizes(f.fourcc)
                .unwrap_or_default()
                .into_iter()
                .map(|s| match s.size {
                    FrameSizeEnum::Discrete(d) => format!("{}x{}", d.width, d.height),
                    FrameSizeEnum::Stepwise(s) => {
                        format!("{}x{}..{}x{}", s.min_width, s.min_height, s.max_width, s.max_height)
                    }
                })
                .collect();
            if sizes.is_empty() { name } else { format!("{name} {}", sizes.join(" ")) }
        })
        .collect();
    if list.is_empty() { "no capture formats".into() } else { list.join(", ") }
}

/// Streams until `stop` is set (then `Ok`), `on_frame` breaks (then `Ok`), or the
/// device fails or stalls for `frame_timeout` (then `Err`).
pub fn stream(
    dev: &Device,
    spec: &CaptureSpec,
    negotiated: &Negotiated,
    frame_timeout: Duration,
    stop: &AtomicBool,
    on_frame: &mut dyn FnMut(&CapturedFrame<'_>) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    let device = show(&spec.device);
    let mut stream = MmapStream::with_buffers(dev, Type::VideoCapture, BUFFERS)
        .map_err(|source| CaptureError::Ioctl { device: device.clone(), what: "VIDIOC_REQBUFS", source })?;
    stream.set_timeout(POLL);
    let started = Instant::now();
    let mut last_frame = Instant::now();
    let mut first_ts: Option<Duration> = None;
    while !stop.load(Ordering::Relaxed) {
        let (buf, meta) = match stream.next() {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::Interrupted => {
                let idle = last_frame.elapsed();
                if idle >= frame_timeout {
                    return Err(CaptureError::Stalled { device, secs: idle.as_secs_f64() });
                }
                continue;
            }
            // ENODEV: unplugged.
            Err(e) if e.raw_os_error() == Some(19) => return Err(CaptureError::Disconnected { device, source: e }),
            Err(source) => return Err(CaptureError::Ioctl { device, what: "VIDIOC_DQBUF", source }),
        };
        last_frame = Instant::now();
        let used = (meta.bytesused as usize).min(buf.len());
        if used == 0 || meta.flags.contains(v4l::buffer::Flags::ERROR) {
            continue;
        }
        // Device timestamps (CLOCK_MONOTONIC) when the driver sets them, else arrival time.
        let device_ts = Duration::from_secs(u64::try_from(meta.timestamp.sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(meta.timestamp.usec).unwrap_or(0).min(999_999));
        let pts = if device_ts.is_zero() {
            started.elapsed()
        } else {
            let first = *first_ts.get_or_insert(device_ts);
            device_ts.saturating_sub(first)
        };
        let frame = CapturedFrame {
            data: &buf[..used],
            pts,
            format: negotiated.format,
            width: negotiated.width,
            height: negotiated.height,
            stride: negotiated.stride,
        };
        if on_frame(&frame).is_break() {
            break;
        }
    }
    Ok(())
}
