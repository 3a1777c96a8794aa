//! Boot confirmation: the booted slot is marked good once the daemon is up, or,
//! on the trial boot after an install, once it is fully healthy; a trial slot
//! that is not healthy within `confirm_timeout_s` is marked bad and left.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{InstallState, Updater};

/// The booted system's health as the boot confirmation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootCheck {
    /// The full health check passes (healthy, or degraded by a notifier).
    Healthy,
    /// The daemon is up (store, pipeline, API) but something critical is not
    /// (the reason): enough for a normal boot, not for a new slot.
    Up(String),
    /// The daemon is not working (the reason).
    Down(String),
}

/// Written after an install: the slot the box came from, so the next start
/// knows whether it is the new slot's trial boot or a return after a failure.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) from_slot: String,
}

/// How often the check is asked again while the slot is not confirmed.
const POLL: Duration = Duration::from_secs(5);

impl Updater {
    /// Confirms this boot (see the module docs): marks the slot good once
    /// `check` allows it; on the trial boot after an install, marks it bad and
    /// reboots when the full check has not passed within `confirm_timeout_s`.
    pub async fn confirm_boot<F, Fut>(&self, mut check: F, stop: CancellationToken)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = BootCheck>,
    {
        let Some(system) = &self.system else { return };
        let booted = self.status().slot.unwrap_or_default();
        let pending: Option<Pending> =
            std::fs::read(self.pending_path()).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let trial = match pending {
            Some(p) if p.from_slot == booted => {
                let msg = format!(
                    "the update did not take: the new slot failed and the box is back on slot {booted} (version {})",
                    self.status().installed_version()
                );
                error!("{msg}");
                self.set_install(InstallState::Failed, 0, Some(msg));
                self.clear_pending();
                false
            }
            Some(p) => {
                info!(slot = %booted, from_slot = %p.from_slot, timeout_s = self.cfg.confirm_timeout_s,
                    "first boot of a new slot: it must pass the health check to be kept");
                true
            }
            None => false,
        };
        let deadline = self.clock.monotonic() + Duration::from_secs(self.cfg.confirm_timeout_s);
        let mut last_reason = String::new();
        loop {
            let verdict = check().await;
            let good = match &verdict {
                BootCheck::Healthy => true,
                BootCheck::Up(_) => !trial,
                BootCheck::Down(_) => false,
            };
            if good {
                match system.mark(true).await {
                    Ok(()) => {
                        info!(slot = %booted, version = %self.status().installed_version(), "slot marked good");
                        if trial {
                            self.clear_pending();
                            self.set_install(InstallState::Idle, 0, None);
                        }
                        self.set(|s| s.slot_confirmed = true);
                        return;
                    }
                    Err(e) => warn!(error = %crate::telemetry::chain(&e), "cannot mark the slot good; retrying"),
                }
            } else if let BootCheck::Up(r) | BootCheck::Down(r) = verdict {
                last_reason = r;
            }
            if trial && self.clock.monotonic() >= deadline {
                let msg = format!(
                    "slot {booted} failed its health check for {} s ({last_reason}): marking it bad and returning to the previous slot",
                    self.cfg.confirm_timeout_s
                );
                error!("{msg}");
                if let Err(e) = system.mark(false).await {
                    error!(error = %crate::telemetry::chain(&e), "cannot mark the slot bad");
                }
                self.set_install(InstallState::Failed, 0, Some(msg));
                if self.cfg.reboot {
                    self.request_reboot();
                }
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    fn clear_pending(&self) {
        let _ = std::fs::remove_file(self.pending_path());
    }
}
