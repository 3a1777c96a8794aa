//! `homesec cleanup`: what retention deletes and why, as text.

use std::fmt::Write;

use crate::domain::rfc3339;
use crate::retention::{CleanupReport, stuck_reason};

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The report as `homesec cleanup` prints it.
pub fn render(report: &CleanupReport) -> String {
    let mut out = String::new();
    for r in &report.rechecked {
        let _ = writeln!(out, "quarantine: {}: {}", r.clip_id, r.detail);
    }
    if !report.rechecked.is_empty() {
        out.push('\n');
    }
    let p = &report.plan;
    let _ = writeln!(
        out,
        "HomeSec keeps {} on the data partition (quota {}); {} free of {} (floor {}).",
        mb(p.usage.used),
        mb(p.budget.max_bytes),
        mb(p.usage.free),
        mb(p.usage.total),
        mb(p.budget.min_free),
    );
    if p.deletions.is_empty() {
        out.push_str("Nothing to delete.\n");
    } else {
        let verb = if report.pass.is_some() { "Deleted" } else { "Would delete" };
        let _ = writeln!(out, "{verb} {} clip(s), {}:", p.deletions.len(), mb(p.bytes()));
        let _ =
            writeln!(out, "  {:<32} {:<14} {:<24} {:<12} {:>9}  WHY", "CLIP", "CAMERA", "STARTED", "STATUS", "SIZE");
        for d in &p.deletions {
            let _ = writeln!(
                out,
                "  {:<32} {:<14} {:<24} {:<12} {:>9}  {}",
                d.clip_id,
                d.camera,
                rfc3339(d.start_ms),
                d.status.as_str(),
                mb(d.bytes),
                d.reason
            );
        }
    }
    for (why, k) in &p.kept {
        let _ = writeln!(out, "Kept although space is wanted: {} clip(s), {}: {why}.", k.clips, mb(k.bytes));
    }
    if let Some(why) = stuck_reason(p) {
        let _ = writeln!(out, "The budget cannot be held: {why}.");
    }
    match &report.pass {
        Some(pass) => {
            if pass.outcome.failed > 0 {
                let _ = writeln!(out, "{} clip(s) could not be deleted (see the log).", pass.outcome.failed);
            }
            let _ = writeln!(
                out,
                "Freed {}. Store: {} record(s) reduced to a summary, {} forgotten.",
                mb(pass.outcome.bytes),
                pass.records_compacted,
                pass.records_forgotten
            );
        }
        None if !p.deletions.is_empty() => out.push_str("Dry run: nothing was deleted. Run with --yes to delete.\n"),
        None => {}
    }
    out
}
