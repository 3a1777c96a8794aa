//! Shared helpers for integration tests: where the real test material lives.
#![allow(dead_code)]

pub mod config;
pub mod dropbox;
pub mod peers;
pub mod pki;
pub mod postgres;
pub mod rtsp;
pub mod s3;
pub mod standin;
pub mod web;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Real test material (models, footage, images): `HOMESEC_TESTDATA`, else
/// `../shared/testdata` beside the repository.
pub fn testdata() -> PathBuf {
    let dir = std::env::var_os("HOMESEC_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/testdata"));
    assert!(dir.is_dir(), "test data not found at {} (set HOMESEC_TESTDATA)", dir.display());
    dir
}

pub fn footage(name: &str) -> PathBuf {
    testdata().join("footage").join(name)
}

pub fn image(name: &str) -> PathBuf {
    testdata().join("images").join(name)
}

pub fn model(name: &str) -> PathBuf {
    testdata().join("models").join(name)
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else the one `models/fetch-onnxruntime.sh`
/// installed under `.homesec/lib/`.
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let lib_dir = repo_root().join(".homesec/lib");
    std::fs::read_dir(&lib_dir)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
        })
        .unwrap_or_else(|| panic!("ONNX Runtime not found in {}: run models/fetch-onnxruntime.sh", lib_dir.display()))
}

/// The ffprobe view of a clip.
#[derive(Debug)]
pub struct Probe {
    pub codec: String,
    pub width: u64,
    pub height: u64,
    pub frames: u64,
    pub duration_s: f64,
}

/// Reads a clip with ffprobe, decoding every frame; fails the test on any complaint.
pub fn ffprobe(path: &std::path::Path) -> Probe {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-of", "json"])
        .args(["-show_entries", "stream=codec_name,width,height,nb_read_frames:format=duration,format_name"])
        .arg(path)
        .output()
        .expect("ffprobe (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffprobe failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stderr.is_empty(),
        "ffprobe complains about {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    assert!(v["format"]["format_name"].as_str().unwrap().contains("mp4"), "{v}");
    Probe {
        codec: s["codec_name"].as_str().unwrap().to_owned(),
        width: s["width"].as_u64().unwrap(),
        height: s["height"].as_u64().unwrap(),
        frames: s["nb_read_frames"].as_str().unwrap().parse().unwrap(),
        duration_s: v["format"]["duration"].as_str().unwrap().parse().unwrap(),
    }
}

/// Re-encodes `src` to H.265 with ffmpeg (libx265) into `dst`, tagged `tag`
/// (`hvc1` or `hev1`), video only; `x265` adds libx265 options (`a=1:b=2`),
/// `extra` ffmpeg output arguments (`-vf …`). Test material is generated at
/// test time, never stored.
pub fn encode_h265(src: &std::path::Path, dst: &std::path::Path, tag: &str, x265: &str, extra: &[&str]) {
    let x265 = if x265.is_empty() { "log-level=error".to_owned() } else { format!("log-level=error:{x265}") };
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(src)
        .args(["-an", "-c:v", "libx265", "-preset", "ultrafast", "-tag:v", tag, "-x265-params", &x265])
        .args(extra)
        .arg(dst)
        .output()
        .unwrap_or_else(|e| {
            panic!("ffmpeg with libx265 is needed to make H.265 test clips (apt-get install ffmpeg): {e}")
        });
    assert!(
        out.status.success(),
        "ffmpeg could not encode {} to H.265: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A store at `path`, keeping a sync outbox, with `clips` finished clips of the
/// camera `porch` (ten seconds apart from 2023-11-14), each committed with
/// `events` after its insert; all of it waits in the sync outbox.
pub fn finished_clips(
    path: &std::path::Path,
    clips: usize,
    events: &[homesec::domain::EventKind],
) -> homesec::store::Store {
    use homesec::domain::{Clip, ClipRecord};
    let store = homesec::store::Store::open(path).unwrap().with_sync_outbox();
    for chunk in 0..clips.div_ceil(100) {
        store
            .write(|w| {
                for i in chunk * 100..((chunk + 1) * 100).min(clips) {
                    let id = format!("porch_{}", 1_700_000_000 + i);
                    let start_ms = (1_700_000_000 + i as i64) * 1000;
                    let clip = Clip {
                        clip_id: id.as_str().into(),
                        camera: "porch".into(),
                        local_path: format!("/nonexistent/{id}.mp4"),
                        start_ms,
                        end_ms: start_ms + 10_000,
                        source_backend: "folder".into(),
                    };
                    w.insert_clip(&ClipRecord::new(clip))?;
                    w.update_clip(&id, events.iter().cloned(), |r| r.completed_ms = Some(start_ms + 20_000))?;
                }
                Ok(())
            })
            .unwrap();
    }
    store
}
