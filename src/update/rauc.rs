//! The RAUC command-line tool as the box's [`SlotSystem`]: it talks to the RAUC
//! service over D-Bus, which verifies the bundle's signature, writes the
//! inactive slot and switches the boot order.

use std::path::Path;
use std::process::Stdio;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use super::{SlotSystem, UpdateError};

/// `rauc status --output-format=json`, the part we read.
#[derive(Debug, Deserialize)]
struct StatusJson {
    /// Boot name of the booted slot (`A` / `B`).
    booted: Option<String>,
}

pub struct Rauc {
    command: String,
}

impl Rauc {
    pub fn new(command: impl Into<String>) -> Self {
        Self { command: command.into() }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.command);
        c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        c
    }

    fn describe(&self, args: &[&str]) -> String {
        format!("{} {}", self.command, args.join(" "))
    }

    /// Runs `rauc args…` to completion; stdout on success.
    async fn run(&self, args: &[&str]) -> Result<String, UpdateError> {
        let command = self.describe(args);
        let out =
            self.cmd(args).output().await.map_err(|source| UpdateError::Spawn { command: command.clone(), source })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(UpdateError::Command { command, message: failure_message(&out.stderr, &out.stdout) })
        }
    }
}

/// What a failed `rauc` call said: RAUC's `LastError:` line (which `rauc install`
/// prints on stdout, e.g. why a signature was refused), else its last non-empty
/// stderr lines (or stdout).
fn failure_message(stderr: &[u8], stdout: &[u8]) -> String {
    let last_error = [stdout, stderr].iter().find_map(|b| {
        String::from_utf8_lossy(b)
            .lines()
            .find_map(|l| l.trim().strip_prefix("LastError:").map(|e| e.trim().to_owned()))
    });
    if let Some(e) = last_error.filter(|e| !e.is_empty()) {
        return e;
    }
    let pick = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" / ")
    };
    let msg = pick(stderr);
    if msg.is_empty() { pick(stdout) } else { msg }
}

/// The percentage at the start of a `rauc install` progress line (`" 40% Copying image…"`).
pub fn progress_of(line: &str) -> Option<u8> {
    let (num, _) = line.trim_start().split_once('%')?;
    num.trim().parse::<u8>().ok().filter(|p| *p <= 100)
}

/// The booted slot from `rauc status --output-format=json`.
pub fn booted_from_status(json: &str) -> Result<String, String> {
    let s: StatusJson = serde_json::from_str(json).map_err(|e| e.to_string())?;
    s.booted.filter(|b| !b.is_empty()).ok_or_else(|| "no booted slot in the status".to_owned())
}

#[async_trait]
impl SlotSystem for Rauc {
    async fn booted_slot(&self) -> Result<String, UpdateError> {
        let args = ["status", "--output-format=json"];
        let out = self.run(&args).await?;
        booted_from_status(&out).map_err(|message| UpdateError::Output { command: self.describe(&args), message })
    }

    async fn mark(&self, good: bool) -> Result<(), UpdateError> {
        self.run(&["status", if good { "mark-good" } else { "mark-bad" }, "booted"]).await.map(drop)
    }

    async fn install(&self, bundle: &Path, progress: &(dyn Fn(u8) + Send + Sync)) -> Result<(), UpdateError> {
        let path = bundle.to_string_lossy();
        let args = ["install", path.as_ref()];
        let command = self.describe(&args);
        let mut child =
            self.cmd(&args).spawn().map_err(|source| UpdateError::Spawn { command: command.clone(), source })?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            // Both are piped in `cmd`.
            return Err(UpdateError::Output { command, message: "no output pipes".into() });
        };
        let err_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            buf
        });
        let mut out_text = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(p) = progress_of(&line) {
                progress(p);
            }
            out_text.extend_from_slice(line.as_bytes());
            out_text.push(b'\n');
        }
        let status = child.wait().await.map_err(|source| UpdateError::Spawn { command: command.clone(), source })?;
        let err = err_task.await.unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(UpdateError::Command { command, message: failure_message(&err, &out_text) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_give_percentages() {
        assert_eq!(progress_of("  0% Installing"), Some(0));
        assert_eq!(progress_of(" 40% Copying image to rootfs.1"), Some(40));
        assert_eq!(progress_of("100% Installing done."), Some(100));
        assert_eq!(progress_of("installing"), None);
        assert_eq!(progress_of("Installing `/x.raucb` succeeded"), None);
        assert_eq!(progress_of("250% nonsense"), None);
    }

    #[test]
    fn the_booted_slot_comes_from_the_status() {
        let json = r#"{"compatible":"homesec-x86_64","variant":"","booted":"B","boot_primary":"rootfs.1",
            "slots":[{"rootfs.0":{"class":"rootfs","state":"inactive","bootname":"A","boot_status":"good"}}]}"#;
        assert_eq!(booted_from_status(json), Ok("B".into()));
        assert!(booted_from_status(r#"{"booted":""}"#).is_err());
        assert!(booted_from_status("Compatible: x").is_err());
    }

    #[test]
    fn failures_quote_the_last_lines() {
        let err = b"rauc-Message: foo\n\nFailed to check bundle signature: Verification failed\nInstalling failed\n";
        assert_eq!(
            failure_message(err, b""),
            "rauc-Message: foo / Failed to check bundle signature: Verification failed / Installing failed"
        );
        assert_eq!(failure_message(b"", b"only stdout\n"), "only stdout");
        // RAUC 1.8 refusing a bundle signed by a foreign key.
        let out = b"installing\n  0% Installing\n 40% Verifying signature failed.\n100% Installing failed.\n\
            LastError: signature verification failed: Verify error: unable to get local issuer certificate\nidle\n";
        assert_eq!(
            failure_message(b"Installing `/var/lib/homesec/update/bundle.raucb' failed\n", out),
            "signature verification failed: Verify error: unable to get local issuer certificate"
        );
    }

    #[tokio::test]
    async fn a_missing_tool_is_an_error_naming_it() {
        let r = Rauc::new("/nonexistent/rauc");
        // Spawn fails natively; under qemu-user the exec failure shows as a failed command.
        let err = r.booted_slot().await.unwrap_err();
        assert!(matches!(err, UpdateError::Spawn { .. } | UpdateError::Command { .. }), "{err:?}");
        assert!(crate::telemetry::chain(&err).contains("/nonexistent/rauc status"), "{err}");
    }
}
