//! The cooldown in the pipeline, on a simulated clock: a continuing presence
//! updates one alert (MQTT-like notifiers get the updates, mail does not).

use super::*;
use crate::domain::Stage;

const MINUTE: Duration = Duration::from_secs(60);

impl Rig {
    /// Hands in a clip (the pipeline is started) and waits until it is finished.
    async fn clip_done(&self, id: &str) -> ClipRecord {
        assert!(self.pipeline.sink().submit(clip(id)).await.unwrap());
        self.wait(id, finished).await
    }

    fn mailed(&self) -> Vec<Alert> {
        self.mail.as_ref().unwrap().sent.lock().unwrap().iter().map(|(a, _)| a.clone()).collect()
    }

    /// (dedupe key, occurrences, clip id) of what the MQTT-like notifier got.
    fn updates(&self) -> Vec<(String, u32, String)> {
        self.sent().into_iter().map(|(a, _)| (a.dedupe_key, a.occurrences, a.clip_id.0)).collect()
    }
}

fn update(key: &str, n: u32, clip: &str) -> (String, u32, String) {
    (key.into(), n, clip.into())
}

fn mail_rig() -> Rig {
    rig(Setup { mail: true, ..Default::default() })
}

#[tokio::test]
async fn three_clips_of_a_person_within_the_cooldown_are_one_alert_counted_not_mailed_again() {
    let rig = mail_rig();
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    rig.clip_done("front_1").await;
    rig.advance(4 * MINUTE);
    rig.clip_done("front_2").await;
    rig.advance(4 * MINUTE);
    let third = rig.clip_done("front_3").await;

    // Eight minutes of presence, each clip within five minutes of the last: one alert.
    assert_eq!(
        rig.updates(),
        [update("front_1", 1, "front_1"), update("front_1", 2, "front_2"), update("front_1", 3, "front_3")]
    );
    let texts: Vec<_> = rig.sent().into_iter().map(|(a, _)| a.occurrences_text).collect();
    assert_eq!(texts[0], None);
    assert!(texts[2].as_deref().is_some_and(|t| t.starts_with("3 clips since ")), "{texts:?}");
    let mailed = rig.mailed();
    assert_eq!(mailed.len(), 1, "mail gets the new alert only: {mailed:?}");
    assert_eq!(mailed[0].clip_id.as_str(), "front_1");

    // The record tells what happened.
    let d = third.decision.clone().unwrap();
    assert_eq!(d.reason, "risk_level=high (update of alert front_1, 3 clips)");
    assert_eq!(third.status(), ClipStatus::Done);
    assert_eq!(rig.sent()[2].0.notify_reason, d.reason);
}

#[tokio::test]
async fn a_clip_after_the_window_raises_a_new_alert_mailed_again() {
    let rig = mail_rig();
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    rig.clip_done("front_1").await;
    rig.advance(5 * MINUTE);
    let r = rig.clip_done("front_2").await;
    assert_eq!(rig.updates(), [update("front_1", 1, "front_1"), update("front_2", 1, "front_2")]);
    assert_eq!(rig.mailed().len(), 2);
    assert_eq!(r.decision.unwrap().reason, "risk_level=high");
}

#[tokio::test]
async fn a_restart_inside_the_window_keeps_the_open_alert() {
    let first = mail_rig();
    first.pipeline.start(&first.dir.join("recordings")).await.unwrap();
    first.clip_done("front_1").await;
    let (dir, at) = (first._dir, first.clock.now_ms());
    first.pipeline.shutdown(Duration::from_secs(5)).await;
    drop(first.pipeline);

    // Back three minutes later, on the same store.
    let start_ms = at + 3 * 60_000;
    let back = rig(Setup { mail: true, dir: Some(dir), start_ms, ..Default::default() });
    back.pipeline.start(&back.dir.join("recordings")).await.unwrap();
    back.clip_done("front_2").await;
    assert_eq!(back.updates(), [update("front_1", 2, "front_2")]);
    assert!(back.mailed().is_empty(), "an update is not mailed");

    // Back after the window: the closed alert is gone from the store.
    let (dir, at) = (back._dir, back.clock.now_ms());
    back.pipeline.shutdown(Duration::from_secs(5)).await;
    drop(back.pipeline);
    let later = rig(Setup { mail: true, dir: Some(dir), start_ms: at + 10 * 60_000, ..Default::default() });
    assert_eq!(later.pipeline.store().open_alerts("front").unwrap().len(), 1, "kept until the start");
    later.pipeline.start(&later.dir.join("recordings")).await.unwrap();
    assert!(later.pipeline.store().open_alerts("front").unwrap().is_empty());
}

#[tokio::test]
async fn a_live_clip_inside_the_window_sends_no_early_alert_and_its_final_alert_updates() {
    let rig = mail_rig();
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    rig.clip_done("front_1").await;
    rig.advance(MINUTE);
    assert!(!rig.pipeline.sink().sighting(sighting("front_2")).await.unwrap(), "held back");
    assert!(rig.pipeline.store().early_alert("front_2").unwrap().is_none());
    assert!(!rig.dir.join("snapshots/front_2.jpg").exists());
    let r = rig.finish_live("front_2", &["person"]).await;
    assert_eq!(r.status(), ClipStatus::Done);
    let sent = rig.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        (sent[1].0.stage, sent[1].0.dedupe_key.as_str(), sent[1].0.occurrences),
        (AlertStage::Analyzed, "front_1", 2)
    );
    assert_eq!(rig.mailed().len(), 1);

    // A live clip that opens an alert: early and final alerts share its key and count once.
    rig.advance(10 * MINUTE);
    assert!(rig.pipeline.sink().sighting(sighting("front_3")).await.unwrap());
    rig.wait_sent(3).await;
    rig.finish_live("front_3", &["person"]).await;
    let last: Vec<_> = rig.sent()[2..].iter().map(|(a, _)| (a.stage, a.dedupe_key.clone(), a.occurrences)).collect();
    assert_eq!(last, [(AlertStage::Detected, "front_3".into(), 1), (AlertStage::Analyzed, "front_3".into(), 1)]);
    assert_eq!(rig.mailed().len(), 3, "both the early and the final alert of a new alert are mailed");
}

#[tokio::test]
async fn an_update_no_notifier_takes_is_not_sent_and_the_record_says_why() {
    let rig = rig(Setup { fake_takes_updates: false, ..Default::default() });
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    rig.clip_done("front_1").await;
    rig.advance(MINUTE);
    let r = rig.clip_done("front_2").await;
    assert_eq!(rig.sent().len(), 1);
    assert_eq!((r.notify.status, r.status()), (StageStatus::Skipped, ClipStatus::Done));
    let why = EventKind::StageSkipped {
        stage: Stage::Notify,
        reason: "an update of alert front_1: no notifier takes updates".into(),
    };
    assert!(rig.events("front_2").await.contains(&why));
    let summary = crate::domain::ClipSummary::of(&r);
    assert_eq!(summary.outcome(), "ALERT: risk_level=high (update of alert front_1, 2 clips)");
}

#[tokio::test]
async fn cooldown_s_zero_raises_an_alert_per_clip() {
    let rig = rig(Setup { mail: true, policy: "cooldown_s: 0", ..Default::default() });
    rig.pipeline.start(&rig.dir.join("recordings")).await.unwrap();
    rig.clip_done("front_1").await;
    rig.clip_done("front_2").await;
    assert_eq!(rig.updates(), [update("front_1", 1, "front_1"), update("front_2", 1, "front_2")]);
    assert_eq!(rig.mailed().len(), 2);
    assert!(rig.pipeline.store().open_alerts("front").unwrap().is_empty(), "nothing kept");
}
