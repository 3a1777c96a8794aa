//! Motion detector on real footage (`../shared/testdata/footage`), with the
//! default config: what users get.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use homesec::cli::motion::{MotionReport, analyze_file};
use homesec::media::motion::{MotionConfig, MotionDetector, MotionSample};
use homesec::media::{self};

/// Counts allocations per thread, to check that `process` allocates nothing
/// once the detector is set up.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised
// thread-local Cell (no lazy initialisation, no allocation, no destructor).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn analyze(name: &str, cfg: &MotionConfig, detect_fps: f64) -> MotionReport {
    let report = analyze_file(&common::footage(name), cfg, detect_fps, None).expect("analyse the clip");
    println!("{report}");
    report
}

/// A grayscale frame copied out of a clip (rows packed, stride = width).
struct Gray {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

fn gray_frame_at(name: &str, ts_s: f64) -> Gray {
    let mut out = None;
    media::for_each_frame(&common::footage(name), &mut |f| {
        if f.ts_s + 1e-6 < ts_s {
            return true;
        }
        let (y, stride) = f.luma();
        let w = f.width as usize;
        let data = (0..f.height as usize).flat_map(|r| y[r * stride..r * stride + w].iter().copied()).collect();
        out = Some(Gray { width: f.width, height: f.height, data });
        false
    })
    .expect("decode");
    out.expect("a frame at that time")
}

fn feed(d: &mut MotionDetector, g: &Gray) -> MotionSample {
    d.process(&g.data, g.width as usize, g.width, g.height)
}

#[test]
fn empty_people_empty_gives_one_interval_around_the_people() {
    // The clip: ~8 s of the empty scene, a fade, ~20 s of people, a fade, ~8 s empty.
    // Every frame (10 fps) and a 5 fps detect rate, both with the defaults.
    for fps in [0.0, 5.0] {
        let r = analyze("scene_empty_people_empty.mp4", &MotionConfig::default(), fps);
        assert_eq!(r.intervals.len(), 1, "exactly one motion interval at detect_fps {fps}: {:?}", r.intervals);
        let i = &r.intervals[0];
        assert!((6.5..=9.0).contains(&i.start_s), "motion starts at {} s (detect_fps {fps})", i.start_s);
        assert!((26.0..=29.5).contains(&i.end_s), "motion ends at {} s (detect_fps {fps})", i.end_s);
        assert!(!i.open_at_end);
        assert_eq!(r.recalibrations, 0);
        assert_eq!(r.analysis_size, (320, 240));
        // The empty parts score nothing at all: the defaults have a wide margin over sensor noise.
        let quiet = r.per_second.iter().filter(|s| s.second < 6 || s.second > 30);
        assert!(quiet.clone().count() >= 8);
        for s in quiet {
            assert!(s.max_score < 0.001, "second {} scores {}", s.second, s.max_score);
        }
        let text = r.to_string();
        assert!(text.contains("motion intervals:") && text.contains("MOTION"), "{text}");
    }
}

#[test]
fn swaying_tree_is_motion() {
    let r = analyze("tree_motion_no_person.mp4", &MotionConfig::default(), 0.0);
    assert!(!r.intervals.is_empty(), "foliage moving in the wind is motion");
    let in_motion: f64 = r.intervals.iter().map(|i| i.end_s - i.start_s).sum();
    assert!(in_motion > 15.0, "the tree moves most of the clip; motion for {in_motion:.1} s");
    assert!(r.peak.as_ref().is_some_and(|p| p.score > 0.05));
}

#[test]
fn a_mask_over_the_whole_frame_sees_nothing() {
    let cfg =
        MotionConfig { masks: vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]], ..MotionConfig::default() };
    for name in ["scene_empty_people_empty.mp4", "tree_motion_no_person.mp4"] {
        let r = analyze(name, &cfg, 0.0);
        assert!(r.intervals.is_empty(), "{name}: {:?}", r.intervals);
        assert!(r.per_second.iter().all(|s| s.max_score == 0.0 && !s.motion));
    }
}

#[test]
fn a_mask_over_the_walkway_hides_the_people() {
    // The people walk along the road in the lower middle of the picture; masking that
    // band leaves only the edges of a few figures, well under min_area.
    let cfg = MotionConfig {
        masks: vec![vec![[0.0, 0.25], [1.0, 0.1], [1.0, 0.85], [0.0, 0.85]]],
        ..MotionConfig::default()
    };
    let full = analyze("scene_empty_people_empty.mp4", &MotionConfig::default(), 0.0);
    let masked = analyze("scene_empty_people_empty.mp4", &cfg, 0.0);
    let peak = |r: &MotionReport| r.peak.as_ref().map_or(0.0, |p| p.score);
    assert!(peak(&masked) < peak(&full) / 4.0, "masked peak {} vs {}", peak(&masked), peak(&full));
}

#[test]
fn a_sudden_global_brightness_jump_recalibrates_instead_of_motion() {
    // A real frame of the empty scene, then the same frame 80 levels brighter
    // (an IR switch or an exposure jump), then a one-frame flash (lightning).
    let still = gray_frame_at("scene_empty_people_empty.mp4", 2.0);
    let bright = Gray { data: still.data.iter().map(|v| v.saturating_add(80)).collect(), ..still };

    let mut d = MotionDetector::new(&MotionConfig::default());
    for _ in 0..10 {
        let s = feed(&mut d, &still);
        assert!(!s.motion && !s.recalibrated && s.score < 0.001, "{s:?}");
    }
    let jump = feed(&mut d, &bright);
    assert!(jump.recalibrated, "{jump:?}");
    assert!(!jump.motion);
    assert!(jump.score > 0.6);
    for _ in 0..10 {
        let s = feed(&mut d, &bright);
        assert_eq!((s.motion, s.recalibrated), (false, false), "{s:?}");
        assert!(s.score < 0.001, "the bright frame is the background now: {s:?}");
    }
    // Lightning: one bright frame in a dark sequence resets twice, never reports motion.
    let mut recalibrations = 0;
    for (i, frame) in [&still, &still, &bright, &still, &still, &still].into_iter().enumerate() {
        let s = feed(&mut d, frame);
        assert!(!s.motion, "frame {i}: {s:?}");
        recalibrations += u32::from(s.recalibrated);
    }
    assert_eq!(recalibrations, 3, "back to dark, flash, back to dark");
}

#[test]
fn an_exposure_jump_in_real_footage_does_not_make_a_second_interval() {
    // The real clip with every frame from 3 s on brightened by 60: one
    // recalibration at the jump, then the same single interval as before.
    let mut d = MotionDetector::new(&MotionConfig::default());
    let mut buf = Vec::new();
    let mut recalibrated_at = Vec::new();
    let mut starts = Vec::new();
    let mut was = false;
    media::for_each_frame(&common::footage("scene_empty_people_empty.mp4"), &mut |f| {
        let (y, stride) = f.luma();
        buf.clear();
        buf.extend(y.iter().map(|&v| if f.ts_s >= 3.0 { v.saturating_add(60) } else { v }));
        let s = d.process(&buf, stride, f.width, f.height);
        if s.recalibrated {
            recalibrated_at.push(f.ts_s);
        }
        if s.motion && !was {
            starts.push(f.ts_s);
        }
        was = s.motion;
        true
    })
    .expect("decode");
    assert_eq!(recalibrated_at.len(), 1, "{recalibrated_at:?}");
    assert!((recalibrated_at[0] - 3.0).abs() < 0.05);
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert!((6.5..=9.0).contains(&starts[0]), "{starts:?}");
}

#[test]
fn process_does_not_allocate_after_the_first_frame() {
    let a = gray_frame_at("scene_empty_people_empty.mp4", 12.0);
    let b = gray_frame_at("scene_empty_people_empty.mp4", 12.5);
    let cfg = MotionConfig { masks: vec![vec![[0.0, 0.0], [0.3, 0.0], [0.3, 0.3]]], ..MotionConfig::default() };
    let mut d = MotionDetector::new(&cfg);
    feed(&mut d, &a);
    // The counter works: an allocation on this thread is seen.
    let probe_start = allocations();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
    assert!(allocations() > probe_start, "allocation counter sees nothing");
    let before = allocations();
    let mut moved = 0;
    for i in 0..50 {
        let s = feed(&mut d, if i % 2 == 0 { &b } else { &a });
        moved += u32::from(s.score > 0.0);
    }
    assert_eq!(allocations() - before, 0, "process allocated");
    assert!(moved > 0);
}

#[test]
fn writes_the_changed_pixel_picture_of_the_peak_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("peak.jpg");
    let r = analyze_file(
        &common::footage("scene_empty_people_empty.mp4"),
        &MotionConfig::default(),
        5.0,
        Some(out.as_path()),
    )
    .expect("analyse");
    assert_eq!(r.overlay_written.as_deref(), Some(out.as_path()));
    let peak = r.peak.as_ref().expect("a peak");
    assert!((9.0..27.0).contains(&peak.ts_s), "peak at {} s", peak.ts_s);
    let img = image::open(&out).expect("a readable JPEG").to_rgb8();
    assert_eq!(img.dimensions(), (320, 240));
    // Some pixels are (JPEG-ish) red: the changed pixels.
    let red = img.pixels().filter(|p| p[0] > 200 && p[1] < 90 && p[2] < 90).count();
    let share = red as f64 / (320.0 * 240.0);
    assert!(share > 0.5 * f64::from(peak.score) && share < 2.0 * f64::from(peak.score) + 0.01, "red share {share}");
    assert!(r.to_string().contains(&out.display().to_string()));
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let err = analyze_file(Path::new("/nonexistent/clip.mp4"), &MotionConfig::default(), 0.0, None)
        .expect_err("no such file");
    assert!(err.to_string().contains("/nonexistent/clip.mp4"), "{err}");
}
