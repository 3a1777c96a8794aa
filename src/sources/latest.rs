//! A live camera's newest picture, made on request: the API (and `homesec
//! zones`) asks, the camera's motion thread encodes the next picture it
//! analyses as a JPEG and hands it over. Nothing is encoded while nobody asks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::filter::{SNAPSHOT_MAX_SIZE, SNAPSHOT_QUALITY};
use crate::media::Jpeg;
use crate::media::detect::{DetectFrame, FrameTap};
use crate::media::motion::{MotionDetector, MotionSample};

/// One camera's newest picture, on request.
#[derive(Debug)]
pub struct LatestFrame {
    wanted: AtomicBool,
    tx: watch::Sender<Option<Arc<Jpeg>>>,
}

impl LatestFrame {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { wanted: AtomicBool::new(false), tx: watch::channel(None).0 })
    }

    /// A picture the camera delivers after this call, or `None` when none
    /// came within `timeout` (the camera is down or stalled).
    pub async fn fresh(&self, timeout: Duration) -> Option<Arc<Jpeg>> {
        let mut rx = self.tx.subscribe();
        rx.mark_unchanged();
        self.wanted.store(true, Ordering::Release);
        match tokio::time::timeout(timeout, rx.changed()).await {
            Ok(Ok(())) => rx.borrow().clone(),
            _ => None,
        }
    }

    /// The camera's side: encodes `frame` when a picture was asked for.
    pub fn offer(&self, frame: &DetectFrame<'_>) {
        if !self.wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        match crate::media::encode_jpeg(&frame.to_rgb(), SNAPSHOT_MAX_SIZE, SNAPSHOT_QUALITY) {
            Ok(jpeg) => {
                self.tx.send_replace(Some(Arc::new(jpeg)));
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode the camera's picture"),
        }
    }

    /// The tap that feeds this from a camera's detect stream.
    pub fn tap(self: &Arc<Self>) -> Box<dyn FrameTap> {
        Box::new(LatestTap(self.clone()))
    }
}

struct LatestTap(Arc<LatestFrame>);

impl FrameTap for LatestTap {
    fn frame(&mut self, frame: &DetectFrame<'_>, _motion: &MotionSample, _detector: &MotionDetector) {
        self.0.offer(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Picture;

    fn with_frame(f: impl FnOnce(&DetectFrame<'_>)) {
        let (w, h) = (32u32, 16u32);
        let y = vec![128u8; (w * h) as usize];
        let uv = vec![128u8; (w * h / 4) as usize];
        let picture = Picture::from_planes((w, h), (&y, &uv, &uv), (w as usize, (w / 2) as usize));
        f(&DetectFrame { ts_s: 1.0, picture });
    }

    #[tokio::test]
    async fn a_picture_is_made_only_when_asked_and_a_dead_camera_gives_none() {
        let latest = LatestFrame::new();
        with_frame(|f| latest.offer(f));
        assert!(latest.tx.borrow().is_none(), "nobody asked: nothing encoded");
        assert!(latest.fresh(Duration::from_millis(20)).await.is_none(), "no picture came");

        let asking = {
            let latest = latest.clone();
            tokio::spawn(async move { latest.fresh(Duration::from_secs(5)).await })
        };
        while latest.tx.receiver_count() == 0 {
            tokio::task::yield_now().await;
        }
        with_frame(|f| latest.offer(f));
        let jpeg = asking.await.unwrap().expect("the next picture");
        assert_eq!((jpeg.width, jpeg.height), (32, 16));
        assert!(jpeg.bytes.starts_with(&[0xFF, 0xD8]), "a JPEG");
        assert!(!latest.wanted.load(Ordering::Acquire), "served: no more encoding");
    }
}
