//! Config loading: every problem is listed at once, with its YAML path and line.

use std::path::Path;
use std::process::Command;

use homesec::config::{Config, ConfigIssue};

fn parse(text: &str) -> Result<Config, Vec<ConfigIssue>> {
    homesec::plugins::parse_text(text, Path::new("test.yaml"), Path::new("/etc/homesec"))
}

fn find<'a>(issues: &'a [ConfigIssue], path: &str) -> &'a ConfigIssue {
    issues.iter().find(|i| i.path == path).unwrap_or_else(|| panic!("no problem reported at {path}; got: {issues:#?}"))
}

const MINIMAL: &str = "\
cameras:
  - name: front
    source:
      backend: folder
      config:
        path: /srv/ftp/front
filter:
  backend: yolo
  config:
    model_path: /models/yolox_nano_416.onnx
";

#[test]
fn a_short_config_gets_sensible_defaults() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.cameras.len(), 1);
    assert_eq!(cfg.storage.backend, "local");
    assert_eq!(cfg.alert_policy.backend, "default");
    assert_eq!(cfg.data_dir, Path::new("/etc/homesec/data"), "relative paths resolve against the config's dir");
    assert_eq!(cfg.server.port, 8081);
    assert_eq!(cfg.concurrency.max_clips_in_flight, 4);
    assert!(cfg.vlm.is_none());
}

#[test]
fn every_problem_is_listed_at_once_with_path_and_line() {
    let text = "\
cameras:
  - name: front
    source:
      backend: folder
      config:
        path: /srv/ftp/front
        pol_interval_s: 3
  - name: front
    source:
      backend: carrier_pigeon
filter:
  backend: yolo
  config:
    model_path: /m.onnx
server:
  port: eighty
  api_key_env: HOMESEC_TEST_SURELY_UNSET_KEY
retry:
  max_attempts: 0
colour: blue
";
    let issues = parse(text).unwrap_err();
    let rendered: Vec<String> = issues.iter().map(ToString::to_string).collect();
    // unknown top-level key
    let top = issues.iter().find(|i| i.message.contains("colour")).expect("unknown top-level key reported");
    assert_eq!(top.line, Some(20), "{rendered:#?}");
    // unknown key inside a plugin's config block, with the exact path
    let unknown = issues.iter().find(|i| i.message.contains("pol_interval_s")).expect("unknown plugin key reported");
    assert_eq!(unknown.path, "cameras[0].source.config.pol_interval_s");
    // wrong type
    let port = find(&issues, "server.port");
    assert_eq!(port.line, Some(16));
    // duplicate camera and unknown backend
    assert!(find(&issues, "cameras[1].name").message.contains("twice"));
    assert!(find(&issues, "cameras[1].source.backend").message.contains("carrier_pigeon"));
    // range
    assert_eq!(find(&issues, "retry.max_attempts").line, Some(19));
    assert!(issues.len() >= 6, "{rendered:#?}");
}

#[test]
fn a_missing_secret_names_the_variable() {
    let text = format!("{MINIMAL}server:\n  api_key_env: HOMESEC_TEST_SURELY_UNSET_KEY\n");
    let issues = parse(&text).unwrap_err();
    let i = find(&issues, "server.api_key_env");
    assert!(i.message.contains("HOMESEC_TEST_SURELY_UNSET_KEY is not set"), "{i}");
    assert_eq!(i.line, Some(12));
}

#[test]
fn broken_yaml_is_one_clear_error() {
    let issues = parse("cameras: [\n  - name: x\n").unwrap_err();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].line, Some(2), "{:?}", issues[0]);
    assert!(issues[0].message.starts_with("not valid YAML"), "{:?}", issues[0]);
}

#[test]
fn validate_command_lists_problems_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "cameras: []\nfilter:\n  backend: nope\nserver:\n  prot: 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_homesec")).args(["validate", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("filter.backend (line 3): unknown filter backend `nope`"), "{stderr}");
    assert!(stderr.contains("server.prot (line 5): unknown field `prot`"), "{stderr}");
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
}

#[test]
fn a_log_filter_that_is_not_one_is_named_and_info_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "cameras: []\nfilter:\n  backend: nope\n").unwrap();
    let run = |filter: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_homesec"))
            .args(["validate", "--config"])
            .arg(&file)
            .env("HOMESEC_LOG", filter)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run("homesec=loud");
    assert!(stderr.contains("HOMESEC_LOG is not a log filter") && stderr.contains("homesec=loud"), "{stderr}");
    assert!(stderr.contains("unknown filter backend `nope`"), "{stderr}");
    assert!(!run("info,homesec::config=debug").contains("is not a log filter"));
}

#[test]
fn the_shipped_configs_are_valid() {
    // SAFETY of the test: these variables are only read by this process's config checks.
    unsafe {
        std::env::set_var("OPENAI_API_KEY", "sk-test");
        std::env::set_var("HOMESEC_API_KEY", "k");
        std::env::set_var("FRONT_DOOR_RTSP_URL", "rtsp://u:p@192.168.1.20:554/Streaming/Channels/101");
        std::env::set_var("FRONT_DOOR_DETECT_URL", "rtsp://u:p@192.168.1.20:554/Streaming/Channels/102");
        std::env::set_var("FTP_USERNAME", "camera");
        std::env::set_var("FTP_PASSWORD", "secret");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["config/example.yaml", "config/demo.yaml"] {
        let file = root.join(name);
        let text = std::fs::read_to_string(&file).unwrap();
        let cfg = homesec::plugins::parse_text(&text, &file, &root.join("config"))
            .unwrap_or_else(|issues| panic!("{name}: {issues:#?}"));
        assert!(!cfg.cameras.is_empty(), "{name}");
    }
}

#[test]
fn two_notifiers_need_two_names() {
    let twice = format!("{MINIMAL}notifiers:\n  - backend: mqtt\n  - backend: mqtt\n    config: {{port: 1884}}\n");
    let issues = parse(&twice).unwrap_err();
    let dup = find(&issues, "notifiers[1]");
    assert!(dup.message.contains("two notifiers are named `mqtt`"), "{dup}");
    assert_eq!(dup.line, Some(13), "the line of the second block");

    let named =
        format!("{MINIMAL}notifiers:\n  - backend: mqtt\n  - backend: mqtt\n    config: {{name: lan2, port: 1884}}\n");
    assert!(parse(&named).is_ok(), "distinct names are fine");

    // A block that does not parse is reported for what is wrong with it, not as a duplicate.
    let broken =
        format!("{MINIMAL}notifiers:\n  - backend: mqtt\n  - backend: mqtt\n    config: {{name: lan2, port: 99999}}\n");
    let issues = parse(&broken).unwrap_err();
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].path, "notifiers[1].config.port");
}

#[test]
fn a_webhook_block_is_checked_with_paths_and_lines() {
    let text = format!(
        "{MINIMAL}notifiers:\n  - backend: mqtt\n  - backend: webhook\n    config:\n      \
         url: https://user:pw@example.net/hook\n      secret_env: HOMESEC_TEST_SURELY_UNSET_HOOK\n      \
         timeout_s: 500\n"
    );
    let issues = parse(&text).unwrap_err();
    assert_eq!(issues.len(), 3, "{issues:#?}");
    let url = find(&issues, "notifiers[1].config.url");
    assert!(url.message.contains("must not carry credentials") && !url.message.contains("pw"), "{url}");
    assert_eq!(url.line, Some(15));
    let secret = find(&issues, "notifiers[1].config.secret_env");
    assert!(secret.message.contains("HOMESEC_TEST_SURELY_UNSET_HOOK is not set"), "{secret}");
    assert!(find(&issues, "notifiers[1].config.timeout_s").message.contains("between 1 and 120"));

    let fine = format!(
        "{MINIMAL}notifiers:\n  - backend: mqtt\n  - backend: webhook\n    config: {{url: http://10.0.0.5/h}}\n"
    );
    assert_eq!(parse(&fine).unwrap().notifiers.len(), 2);
    let clash = format!(
        "{MINIMAL}notifiers:\n  - backend: mqtt\n  - backend: webhook\n    config: {{name: mqtt, url: http://10.0.0.5/h}}\n"
    );
    assert!(find(&parse(&clash).unwrap_err(), "notifiers[1]").message.contains("two notifiers are named `mqtt`"));
}

#[test]
fn email_and_push_blocks_are_checked_with_paths_and_lines() {
    let text = format!(
        "{MINIMAL}notifiers:\n  - backend: smtp\n    config:\n      host: mail.example.net\n      tls: none\n      \
         from: homesec\n      to: []\n  - backend: sendgrid\n    config:\n      \
         api_key_env: HOMESEC_TEST_SURELY_UNSET_SG\n      from: a@example.net\n      to: [me@example.net]\n  \
         - backend: ntfy\n    config:\n      server: http://ntfy.example.net\n      topic: a/b\n      \
         priority: {{high: 9}}\n"
    );
    let issues = parse(&text).unwrap_err();
    assert_eq!(issues.len(), 7, "{issues:#?}");
    let tls = find(&issues, "notifiers[0].config.tls");
    assert!(tls.message.contains("in clear to mail.example.net"), "{tls}");
    assert_eq!(tls.line, Some(15));
    assert!(find(&issues, "notifiers[0].config.from").message.contains("`homesec` is not an email address"));
    assert!(find(&issues, "notifiers[0].config.to").message.contains("at least one recipient"));
    let key = find(&issues, "notifiers[1].config.api_key_env");
    assert!(key.message.contains("HOMESEC_TEST_SURELY_UNSET_SG is not set"), "{key}");
    assert!(find(&issues, "notifiers[2].config.server").message.contains("must be https"));
    assert!(find(&issues, "notifiers[2].config.topic").message.contains("letters, digits"));
    assert!(find(&issues, "notifiers[2].config.priority.high").message.contains("between 1 and 5 (got 9)"));
}

#[test]
fn the_examples_notifier_blocks_are_valid_once_uncommented() {
    // SAFETY of the test: these variables are only read by this process's config checks.
    unsafe {
        for var in ["HOMESEC_WEBHOOK_SECRET", "HOMESEC_SMTP_USER", "HOMESEC_SMTP_PASSWORD", "HOMESEC_SENDGRID_API_KEY"]
        {
            std::env::set_var(var, "x");
        }
        std::env::set_var("HOMESEC_NTFY_TOKEN", "tk_x");
    }
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml")).unwrap();
    let start = example.find("  # - backend: webhook").expect("the webhook block");
    let end = start + example[start..].find("\n\n").expect("the end of the notifiers");
    let blocks: String = example[start..end].lines().map(|l| format!("{}\n", l.replacen("  # ", "  ", 1))).collect();
    let cfg = parse(&format!("{MINIMAL}notifiers:\n{blocks}")).unwrap_or_else(|i| panic!("{blocks}\n{i:#?}"));
    let backends: Vec<&str> = cfg.notifiers.iter().map(|n| n.backend.as_str()).collect();
    assert_eq!(backends, ["webhook", "smtp", "sendgrid", "ntfy"]);
}

#[test]
fn retention_limits_are_checked_with_their_paths() {
    let text = format!(
        "{MINIMAL}retention:\n  max_local_size_bytes: 1000\n  keep_records_days: 30\n  keep_summaries_days: 7\n  \
         interval_s: 0\n  keep_failed_days: -1\n  max_age_days: 0\n"
    );
    let issues = parse(&text).unwrap_err();
    assert!(find(&issues, "retention.max_local_size_bytes").message.contains("at least 1048576"));
    assert!(find(&issues, "retention.keep_summaries_days").message.contains("at least keep_records_days"));
    assert_eq!(find(&issues, "retention.keep_summaries_days").line, Some(14));
    for key in ["interval_s", "keep_failed_days", "max_age_days"] {
        find(&issues, &format!("retention.{key}"));
    }
    let defaults = parse(MINIMAL).unwrap().retention;
    assert_eq!(
        (defaults.max_local_size_bytes, defaults.keep_failed_days, defaults.keep_records_days),
        (None, 7.0, 30.0)
    );
}

#[test]
fn the_sync_block_is_checked_with_paths() {
    let issues = |sync: &str| {
        let rendered: Vec<String> = parse(&format!("{MINIMAL}sync:\n{sync}"))
            .unwrap_err()
            .into_iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect();
        rendered
    };
    assert_eq!(issues("  backend: mysql\n"), ["sync.backend: unknown sync backend `mysql` (known: postgres)"]);
    assert_eq!(
        issues(
            "  backend: postgres\n  config:\n    dsn_env: HOMESEC_TEST_NO_SUCH_DSN\n    batch_size: 0\n    \
             log_level: debug\n"
        ),
        [
            "sync.config.batch_size: must be 1 to 10000",
            "sync.config.log_level: must be error, warn, info or off (the least severe level sent to Postgres), \
             not \"debug\"",
            "sync.config.dsn_env: environment variable HOMESEC_TEST_NO_SUCH_DSN is not set"
        ]
    );
    let unknown = issues("  backend: postgres\n  config:\n    dsn: x\n    dsn_env: X\n");
    assert!(unknown[0].starts_with("sync.config.dsn: unknown field `dsn`"), "{unknown:?}");
}

const FTP_CAMERAS: &str = "\
cameras:
  - name: driveway
    source: {backend: ftp, config: {ftp_subdir: driveway}}
  - name: porch
    source: {backend: ftp, config: {ftp_subdir: Driveway}}
  - name: yard
    source: {backend: ftp, config: {ftp_subdir: ../yard}}
filter:
  backend: yolo
  config:
    model_path: /models/yolox_nano_416.onnx
";

#[test]
fn ftp_cameras_without_an_ftp_block_are_each_named() {
    let issues = parse(FTP_CAMERAS).unwrap_err();
    for cam in 0..3 {
        let i = find(&issues, &format!("cameras[{cam}].source.backend"));
        assert!(i.message.contains("needs the top-level `ftp:` block"), "{i}");
    }
    let dup = find(&issues, "cameras[1].source.config.ftp_subdir");
    assert!(dup.message.contains("used by cameras[0].source already"), "{dup}");
    let unsafe_dir = find(&issues, "cameras[2].source.config.ftp_subdir");
    assert!(unsafe_dir.message.contains("`../yard` is not a folder name"), "{unsafe_dir}");
    assert_eq!(issues.len(), 5, "{issues:#?}");
}

#[test]
fn the_ftp_block_is_checked_whole_with_paths_and_lines() {
    let text = format!(
        "{FTP_CAMERAS}ftp:\n  listen: 0.0.0.0:2121\n  passive_ports: \"60000-50000\"\n  \
         username_env: HOMESEC_TEST_SURELY_UNSET_FTP_USER\n  password_env: HOMESEC_TEST_SURELY_UNSET_FTP_PASS\n  \
         anonymous: true\n  max_upload_bytes: 10\n"
    );
    let issues = parse(&text).unwrap_err();
    let ports = find(&issues, "ftp.passive_ports");
    assert!(ports.message.contains("`60000-50000` is not a port range"), "{ports}");
    assert_eq!(ports.line, Some(14));
    assert!(find(&issues, "ftp.username_env").message.contains("HOMESEC_TEST_SURELY_UNSET_FTP_USER is not set"));
    assert!(find(&issues, "ftp.password_env").message.contains("HOMESEC_TEST_SURELY_UNSET_FTP_PASS is not set"));
    let anon = find(&issues, "ftp.anonymous");
    assert!(anon.message.contains("anonymous log-ins on 0.0.0.0:2121"), "{anon}");
    assert!(find(&issues, "ftp.max_upload_bytes").message.contains("at least 1048576"));
    // The cameras' own problems are still there, with the block's.
    find(&issues, "cameras[1].source.config.ftp_subdir");
    find(&issues, "cameras[2].source.config.ftp_subdir");
    assert_eq!(issues.len(), 7, "{issues:#?}");

    // Anonymous on loopback is fine, and so is an explicit allowance elsewhere.
    let one = "cameras:\n  - name: driveway\n    source: {backend: ftp, config: {ftp_subdir: driveway}}\n\
               filter:\n  backend: yolo\n  config:\n    model_path: /m.onnx\n";
    assert!(parse(&format!("{one}ftp:\n  listen: 127.0.0.1:2121\n  anonymous: true\n")).is_ok());
    let open = format!("{one}ftp:\n  listen: 0.0.0.0:2121\n  anonymous: true\n  allow_anonymous_on_network: true\n");
    assert!(parse(&open).is_ok());
    let unknown =
        parse(&format!("{one}ftp:\n  listen: 127.0.0.1:2121\n  anonymous: true\n  root: /srv\n")).unwrap_err();
    assert!(find(&unknown, "ftp.root").message.contains("unknown field `root`"), "{unknown:#?}");
}

#[test]
fn camera_zones_are_checked_with_paths_and_lines() {
    let text = "\
cameras:
  - name: front
    source:
      backend: folder
      config:
        path: /srv/ftp/front
    zones:
      - name: drive
        points: [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]
        classes: [person, car]
      - name: drive
        points: [[0.1, 0.5], [1.2, 0.5]]
        classes: [persn]
filter:
  backend: yolo
  config:
    model_path: /m.onnx
";
    let issues = parse(text).unwrap_err();
    let twice = find(&issues, "cameras[0].zones[1].name");
    assert!(twice.message.contains("`drive` is defined twice"), "{twice}");
    assert!(find(&issues, "cameras[0].zones[1].points").message.contains("at least 3 points"));
    assert!(find(&issues, "cameras[0].zones[1].points[1]").message.contains("outside the frame"));
    let class = find(&issues, "cameras[0].zones[1].classes[0]");
    assert!(class.message.contains("`persn` is not a class the detector knows") && class.line.is_some(), "{class}");
    assert_eq!(issues.len(), 4, "{issues:#?}");
    let ok =
        text.replace("      - name: drive\n        points: [[0.1, 0.5], [1.2, 0.5]]\n        classes: [persn]\n", "");
    let cfg = parse(&ok).unwrap();
    assert_eq!(cfg.cameras[0].zones[0].classes, ["person", "car"]);
    assert!(cfg.cameras[0].zones[0].required, "zones are required by default");
}
