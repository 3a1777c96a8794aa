use super::*;

#[test]
fn a_dsn_is_parsed_without_ever_being_repeated() {
    let s = SyncSettings::from_dsn("DB", "postgresql://homesec:s3cret@db.lan:5432/fleet", 500).unwrap();
    assert_eq!(s.pg.get_dbname(), Some("fleet"));
    assert_eq!(format!("{s:?}"), "SyncSettings { dsn: \"***\", batch_size: 500 }");
    assert_eq!(
        s.redact("password authentication failed (s3cret) for postgresql://homesec:s3cret@db.lan:5432/fleet"),
        "password authentication failed (***) for ***"
    );
    let e = SyncSettings::from_dsn("DB", "postgresql://homesec:s3cret@db.lan:notaport/fleet", 500).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("sync.config.dsn_env") && text.contains("DB"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn tls_modes_are_refused_with_the_reason() {
    for mode in ["require", "verify-full", "verify-ca"] {
        let e = SyncSettings::from_dsn("DB", &format!("postgresql://u:pw@h/db?sslmode={mode}"), 10).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&format!("sslmode={mode}")) && text.contains("without TLS"), "{text}");
    }
    for mode in ["disable", "prefer"] {
        assert!(SyncSettings::from_dsn("DB", &format!("postgresql://u:pw@h/db?sslmode={mode}"), 10).is_ok());
    }
}

#[test]
fn the_config_block_is_checked_with_paths() {
    let spec = |backend: &str, config: serde_json::Value| PluginSpec {
        backend: backend.into(),
        config,
        yaml_path: "sync".into(),
    };
    let issues = |s: PluginSpec| {
        let mut out = Vec::new();
        let locate = |_: &str| None;
        check(&s, &mut Validator::new("sync", &mut out, &locate));
        out.into_iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>()
    };
    assert_eq!(
        issues(spec("mysql", serde_json::Value::Null)),
        ["sync.backend: unknown sync backend `mysql` (known: postgres)"]
    );
    let missing = issues(spec("postgres", serde_json::json!({"dsn_env": "HOMESEC_TEST_NO_SUCH_DSN", "batch_size": 0})));
    assert_eq!(
        missing,
        [
            "sync.config.batch_size: must be 1 to 10000",
            "sync.config.dsn_env: environment variable HOMESEC_TEST_NO_SUCH_DSN is not set"
        ]
    );
    let unknown = issues(spec("postgres", serde_json::json!({"dsn": "x", "dsn_env": "X"})));
    assert!(unknown[0].starts_with("sync.config.dsn: unknown field `dsn`"), "{unknown:?}");
}

#[test]
fn the_db_check_fails_only_with_an_error() {
    let mut s = SyncState::default();
    assert_eq!(problem_of(&s), None);
    s.last_error = Some("cannot reach Postgres: connection refused".into());
    assert_eq!(problem_of(&s).as_deref(), Some("db: cannot reach Postgres: connection refused"));
}
