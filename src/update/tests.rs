//! The updater's decisions against a slot-system double (the real RAUC runs in
//! the image tests under QEMU).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::clock::{Clock, SimulatedClock};

#[derive(Default)]
struct FakeSlots {
    booted: String,
    marks: Mutex<Vec<bool>>,
    installs: AtomicUsize,
    install_error: Option<String>,
}

#[async_trait]
impl SlotSystem for FakeSlots {
    async fn booted_slot(&self) -> Result<String, UpdateError> {
        Ok(self.booted.clone())
    }
    async fn mark(&self, good: bool) -> Result<(), UpdateError> {
        self.marks.lock().unwrap().push(good);
        Ok(())
    }
    async fn install(&self, bundle: &Path, progress: &(dyn Fn(u8) + Send + Sync)) -> Result<(), UpdateError> {
        assert!(bundle.exists(), "the bundle is on disk while it is installed");
        self.installs.fetch_add(1, Ordering::SeqCst);
        progress(50);
        match &self.install_error {
            Some(m) => Err(UpdateError::Command { command: "rauc install".into(), message: m.clone() }),
            None => Ok(()),
        }
    }
}

/// A trial boot must pass within 300 s (by the simulated clock).
fn cfg() -> UpdateConfig {
    UpdateConfig { confirm_timeout_s: 300, ..UpdateConfig::default() }
}

async fn updater(dir: &Path, slots: Arc<FakeSlots>, cfg: UpdateConfig) -> Arc<Updater> {
    updater_with_clock(dir, slots, cfg, SimulatedClock::now()).await
}

async fn updater_with_clock(
    dir: &Path,
    slots: Arc<FakeSlots>,
    cfg: UpdateConfig,
    clock: Arc<SimulatedClock>,
) -> Arc<Updater> {
    Updater::new(cfg, dir.join("update"), Some(slots as Arc<dyn SlotSystem>), clock).await
}

fn slots(booted: &str) -> Arc<FakeSlots> {
    Arc::new(FakeSlots { booted: booted.into(), ..Default::default() })
}

async fn upload(u: &Updater, bytes: &'static [u8]) -> InstallJob {
    let job = u.begin().unwrap();
    let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes)]);
    u.receive(&job, body).await.unwrap();
    job
}

#[test]
fn image_version_comes_from_os_release() {
    let text = "PRETTY_NAME=\"Debian\"\nIMAGE_ID=homesec\nIMAGE_VERSION=\"2026.12.01-3\"\n";
    assert_eq!(image_version(text).as_deref(), Some("2026.12.01-3"));
    assert_eq!(image_version("ID=debian\n"), None);
    assert_eq!(image_version("IMAGE_VERSION=\n"), None);
}

#[tokio::test]
async fn without_rauc_updates_are_unavailable_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rauc = Arc::new(rauc::Rauc::new("/nonexistent/rauc"));
    let u = Updater::new(UpdateConfig::default(), dir.path().join("update"), Some(rauc), SimulatedClock::now()).await;
    assert!(!u.is_available());
    let s = u.status();
    assert_eq!(s.update.state, InstallState::Unavailable);
    assert_eq!(s.slot, None);
    assert!(matches!(u.begin(), Err(UpdateError::Unavailable(_))));
}

#[tokio::test]
async fn an_install_reboots_into_the_new_slot_and_remembers_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let fake = slots("A");
    let u = updater(dir.path(), fake.clone(), cfg()).await;
    assert_eq!(u.status().slot.as_deref(), Some("A"));
    let job = upload(&u, b"bundle bytes").await;
    assert!(matches!(u.begin(), Err(UpdateError::Busy)), "one install at a time");
    u.install(job).await.unwrap();
    assert_eq!(fake.installs.load(Ordering::SeqCst), 1);
    assert_eq!(u.status().update.state, InstallState::Rebooting);
    assert!(u.reboot_request_path().exists(), "reboot requested");
    assert!(!dir.path().join("update/bundle.raucb").exists(), "the bundle does not stay on the data partition");
    let pending = std::fs::read_to_string(dir.path().join("update/pending.json")).unwrap();
    assert!(pending.contains("\"from_slot\":\"A\""), "{pending}");
    assert!(u.begin().is_ok(), "the install slot is free again");
}

#[tokio::test]
async fn an_interrupted_upload_fails_and_frees_the_install_slot() {
    let dir = tempfile::tempdir().unwrap();
    let u = updater(dir.path(), slots("A"), cfg()).await;
    let job = u.begin().unwrap();
    let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(&b"half a bun"[..])]);
    u.receive(&job, body).await.unwrap();
    assert_eq!(u.status().update.state, InstallState::Downloading);
    drop(job); // the client hung up
    let s = u.status();
    assert_eq!(s.update.state, InstallState::Failed);
    assert!(s.update.error.unwrap().contains("interrupted"));
    assert!(!dir.path().join("update/bundle.raucb").exists());
    assert!(u.begin().is_ok());
}

#[tokio::test]
async fn a_refused_bundle_is_a_failure_with_raucs_reason_and_no_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeSlots {
        booted: "A".into(),
        install_error: Some("signature verification failed".into()),
        ..Default::default()
    });
    let u = updater(dir.path(), fake, cfg()).await;
    let job = upload(&u, b"forged").await;
    let err = u.install(job).await.unwrap_err();
    u.failed(&err);
    let s = u.status();
    assert_eq!(s.update.state, InstallState::Failed);
    assert!(s.update.error.as_deref().unwrap().contains("signature verification failed"), "{:?}", s.update.error);
    assert!(!u.reboot_request_path().exists());
    assert!(!dir.path().join("update/pending.json").exists());
}

struct Rebooted {
    dir: tempfile::TempDir,
    fake: Arc<FakeSlots>,
    updater: Arc<Updater>,
    clock: Arc<SimulatedClock>,
}

async fn install_then_boot(booted_after: &str, cfg: UpdateConfig) -> Rebooted {
    let dir = tempfile::tempdir().unwrap();
    let before = updater(dir.path(), slots("A"), cfg.clone()).await;
    let job = upload(&before, b"bundle").await;
    before.install(job).await.unwrap();
    std::fs::remove_file(before.reboot_request_path()).unwrap(); // the reboot unit does this
    let fake = slots(booted_after);
    let clock = SimulatedClock::now();
    let updater = updater_with_clock(dir.path(), fake.clone(), cfg, clock.clone()).await;
    Rebooted { dir, fake, updater, clock }
}

/// A check that always answers `verdict` and takes a minute of the clock;
/// `calls` counts it.
fn slow_check(
    clock: &Arc<SimulatedClock>,
    verdict: BootCheck,
    calls: &Arc<AtomicUsize>,
) -> impl FnMut() -> std::future::Ready<BootCheck> + use<> {
    let (clock, calls) = (clock.clone(), calls.clone());
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        clock.advance(Duration::from_secs(60));
        std::future::ready(verdict.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn the_new_slot_is_kept_only_once_fully_healthy() {
    let Rebooted { dir, fake, updater: u, .. } =
        install_then_boot("B", UpdateConfig { confirm_timeout_s: 3600, ..cfg() }).await;
    let mut answers = vec![BootCheck::Healthy, BootCheck::Up("camera porch unhealthy".into())].into_iter();
    // Up is not enough on a trial boot: the next (healthy) check marks it good.
    let check = || {
        let v = answers.next_back().unwrap_or(BootCheck::Healthy);
        async move { v }
    };
    u.confirm_boot(check, CancellationToken::new()).await;
    assert_eq!(*fake.marks.lock().unwrap(), vec![true]);
    assert!(u.status().slot_confirmed);
    assert!(!dir.path().join("update/pending.json").exists());
    assert!(!u.reboot_request_path().exists());
}

#[tokio::test(start_paused = true)]
async fn a_new_slot_that_stays_unhealthy_is_marked_bad_and_left() {
    let Rebooted { dir, fake, updater: u, clock } = install_then_boot("B", cfg()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let unhealthy = BootCheck::Up("camera porch unhealthy: connection refused".into());
    u.confirm_boot(slow_check(&clock, unhealthy, &calls), CancellationToken::new()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 5, "checked until the 300 s ran out");
    assert_eq!(*fake.marks.lock().unwrap(), vec![false]);
    assert!(u.reboot_request_path().exists(), "reboots into the old slot");
    let s = u.status();
    assert!(!s.slot_confirmed);
    assert_eq!(s.update.state, InstallState::Failed);
    assert!(s.update.error.as_deref().unwrap().contains("connection refused"), "{:?}", s.update.error);
    assert!(dir.path().join("update/pending.json").exists(), "the old slot reports the failure");
}

#[tokio::test(start_paused = true)]
async fn a_new_slot_is_not_given_up_before_its_timeout() {
    let Rebooted { dir, fake, updater: u, clock } = install_then_boot("B", cfg()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut check = slow_check(&clock, BootCheck::Up("camera porch unhealthy".into()), &calls);
    let stop = CancellationToken::new();
    let s = stop.clone();
    // Stops the daemon after the fourth check, 240 s into the 300 s.
    let check = move || {
        let verdict = check();
        if calls.load(Ordering::SeqCst) == 4 {
            s.cancel();
        }
        verdict
    };
    u.confirm_boot(check, stop).await;
    assert_eq!(clock.monotonic(), Duration::from_secs(240));
    assert!(fake.marks.lock().unwrap().is_empty(), "neither kept nor given up yet");
    assert!(!u.reboot_request_path().exists());
    let s = u.status();
    assert!(!s.slot_confirmed);
    assert_ne!(s.update.state, InstallState::Failed);
    assert!(dir.path().join("update/pending.json").exists(), "the next start is still the trial boot");
}

#[tokio::test]
async fn back_on_the_old_slot_the_failed_update_is_reported_and_the_slot_confirmed() {
    let Rebooted { dir, fake, updater: u, .. } = install_then_boot("A", cfg()).await;
    let check = || async { BootCheck::Up("camera porch unhealthy".into()) };
    u.confirm_boot(check, CancellationToken::new()).await;
    assert_eq!(*fake.marks.lock().unwrap(), vec![true], "a normal boot needs the daemon up, not every camera");
    let s = u.status();
    assert!(s.slot_confirmed);
    assert_eq!(s.update.state, InstallState::Failed);
    assert!(s.update.error.as_deref().unwrap().contains("back on slot A"), "{:?}", s.update.error);
    assert!(!dir.path().join("update/pending.json").exists());
}

#[tokio::test(start_paused = true)]
async fn a_normal_boot_waits_while_the_daemon_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let fake = slots("A");
    let u = updater(dir.path(), fake.clone(), cfg()).await;
    let stop = CancellationToken::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let (c, s) = (calls.clone(), stop.clone());
    let check = move || {
        let n = c.fetch_add(1, Ordering::SeqCst);
        if n == 2 {
            s.cancel();
        }
        async move { BootCheck::Down("store does not answer".into()) }
    };
    u.confirm_boot(check, stop).await;
    assert!(fake.marks.lock().unwrap().is_empty(), "never marked while down, never marked bad outside a trial");
    assert!(!u.reboot_request_path().exists());
    assert!(calls.load(Ordering::SeqCst) >= 3);
}
