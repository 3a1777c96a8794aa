//! `homesec zones`: a camera's zones drawn on a real picture of its scene, the
//! legend a user reads, and clear errors for a bad zone or a missing picture.
//! (The live picture through the running daemon is covered in tests/rtsp.rs.)

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// Two folder cameras of the same scene: `porch` with a zone over the lower
/// half of the picture, `plain` with none.
fn config(dir: &Path, zone_points: &str) -> std::path::PathBuf {
    let path = dir.join("homesec.yaml");
    let text = format!(
        "data_dir: {data}\nfilter: {{backend: yolo}}\ncameras:\n  - name: porch\n    source: {{backend: folder, config: {{path: {inbox}}}}}\n    \
         zones:\n      - name: walkway\n        points: {zone_points}\n        classes: [person]\n      - name: \
         lawn\n        points: [[0.0, 0.0], [0.2, 0.0], [0.2, 0.2]]\n        required: false\n  - name: plain\n    \
         source: {{backend: folder, config: {{path: {inbox}}}}}\n",
        data = dir.join("data").display(),
        inbox = dir.join("inbox").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn zones(config: &Path, camera: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_homesec"))
        .args(["zones", "--camera", camera, "--config"])
        .arg(config)
        .args(extra)
        .output()
        .unwrap()
}

/// Mean absolute difference of two pictures over the rows `rows` (fractions of the height).
fn difference(a: &image::RgbImage, b: &image::RgbImage, rows: (f32, f32)) -> f64 {
    let (w, h) = a.dimensions();
    let (y0, y1) = ((rows.0 * h as f32) as u32, (rows.1 * h as f32) as u32);
    let mut sum = 0u64;
    for y in y0..y1 {
        for x in 0..w {
            let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
            sum += (0..3).map(|i| u64::from(p[i].abs_diff(q[i]))).sum::<u64>();
        }
    }
    sum as f64 / f64::from((y1 - y0) * w * 3)
}

#[test]
fn zones_are_drawn_on_a_real_picture_of_the_scene_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "[[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]");
    let clip = common::footage("vtest_h264.mp4");
    let (with, without) = (tmp.path().join("porch.jpg"), tmp.path().join("plain.jpg"));

    let out = zones(&cfg, "porch", &["--from", clip.to_str().unwrap(), "--out", with.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("768x576 picture"), "{stdout}");
    assert!(stdout.contains("zone  walkway (person)") && stdout.contains("[1.000, 0.500]"), "{stdout}");
    assert!(stdout.contains("lawn [label only]"), "an informational zone says so: {stdout}");
    let out = zones(&cfg, "plain", &["--from", clip.to_str().unwrap(), "--out", without.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no zones and no motion masks"), "{stdout}");

    let (a, b) = (image::open(&with).unwrap().to_rgb8(), image::open(&without).unwrap().to_rgb8());
    assert_eq!(a.dimensions(), (768, 576));
    let inside = difference(&a, &b, (0.55, 0.95));
    let outside = difference(&a, &b, (0.25, 0.45));
    assert!(inside > 20.0, "the zone is tinted: {inside:.1}");
    assert!(outside < 3.0, "the picture outside the zones is untouched (JPEG noise only): {outside:.1}");
}

#[test]
fn a_bad_zone_and_a_missing_picture_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "[[0.0, 0.5], [1.5, 0.5]]");
    let out = zones(&cfg, "porch", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cameras[0].zones[0].points"), "the error names the zone: {stderr}");

    let cfg = config(tmp.path(), "[[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]");
    let out = zones(&cfg, "porch", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no picture of `porch`") && stderr.contains("--from FILE"), "{stderr}");
    let out = zones(&cfg, "attic", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no camera `attic`"));
}
