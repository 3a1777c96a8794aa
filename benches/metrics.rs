//! Metrics benchmark: what a frame's counters add to the live path, and what
//! an observation and a scrape cost.
//!
//! `cargo bench --bench metrics` (release). Prints figures; no harness.

use std::hint::black_box;
use std::time::Instant;

use homesec::domain::Stage;
use homesec::metrics::{Delivery, Metrics, ScrapeValues};

const N: u32 = 10_000_000;

/// Nanoseconds per call of `f`, over `n` calls.
fn ns_per(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
}

fn main() {
    let m = Metrics::new();
    let cam = m.camera("porch");
    // What a live camera adds per frame: received, decoded, and a detector submit.
    let frame = ns_per(N, || {
        black_box(&cam).frames_received.inc();
        black_box(&cam).frames_decoded.inc();
        black_box(&cam).detector_submitted.inc();
    });
    println!("per frame (3 counter increments):  {frame:.1} ns");

    // Eight camera threads at once on their own counters.
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in 0..8 {
            let cam = m.camera(&format!("cam{i}"));
            s.spawn(move || {
                for _ in 0..N / 8 {
                    black_box(&cam).frames_received.inc();
                }
            });
        }
    });
    println!(
        "8 threads, one increment:           {:.1} ns wall per increment",
        t.elapsed().as_secs_f64() * 1e9 / f64::from(N)
    );

    let inference = ns_per(N / 10, || m.observe_inference(black_box(0.012)));
    println!("inference histogram observation:   {inference:.1} ns");
    let stage = ns_per(N / 10, || m.observe_stage(Stage::Filter, black_box(1.5)));
    println!("stage histogram observation:       {stage:.1} ns");
    let notification = ns_per(N / 100, || m.notification("mqtt", Delivery::Delivered));
    println!("notification outcome:              {notification:.1} ns");

    for i in 0..8 {
        m.camera(&format!("cam{i}"));
    }
    m.set(&ScrapeValues::default());
    let scrape = ns_per(1000, || {
        black_box(m.encode());
    });
    println!("scrape (8 cameras, {} bytes):     {:.1} µs", m.encode().len(), scrape / 1000.0);
}
