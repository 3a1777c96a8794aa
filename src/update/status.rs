//! What the running system is (versions, slot) and what an install is doing,
//! as the API, the CLI and Home Assistant show it.

use serde::Serialize;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallState {
    /// No RAUC on this system.
    Unavailable,
    Idle,
    Downloading,
    Installing,
    /// Installed; waiting for the reboot into the new slot.
    Rebooting,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstallStatus {
    pub state: InstallState,
    pub progress: u8,
    pub error: Option<String>,
}

/// What the API, the CLI and Home Assistant show about the running system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemStatus {
    /// The daemon's version.
    pub version: String,
    /// The firmware image's version (`IMAGE_VERSION` in os-release).
    pub image_version: Option<String>,
    /// Booted slot (`A` / `B`); none without RAUC.
    pub slot: Option<String>,
    /// The booted slot has been marked good in this boot.
    pub slot_confirmed: bool,
    /// From the update feed, when one is configured and answered.
    pub latest_version: Option<String>,
    pub release_notes: Option<String>,
    #[serde(skip)]
    pub latest_url: Option<String>,
    pub update: InstallStatus,
}

impl SystemStatus {
    /// The version an update replaces: the image's, else the daemon's.
    pub fn installed_version(&self) -> &str {
        self.image_version.as_deref().unwrap_or(&self.version)
    }

    pub fn in_progress(&self) -> bool {
        matches!(self.update.state, InstallState::Downloading | InstallState::Installing)
    }
}

/// `IMAGE_VERSION` from an os-release file's text.
pub fn image_version(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.trim().strip_prefix("IMAGE_VERSION=")?;
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_owned())
    })
}

pub(super) fn read_image_version() -> Option<String> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| image_version(&t))
}

/// How the updater is reached by notifiers (Home Assistant's update entity).
#[derive(Debug, Clone)]
pub struct UpdateLink {
    pub status: watch::Receiver<SystemStatus>,
    /// Asks for the feed's latest bundle to be installed.
    pub install_latest: mpsc::UnboundedSender<()>,
}
