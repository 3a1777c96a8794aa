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
fn the_db_check_fails_only_with_an_error() {
    let mut s = SyncState::default();
    assert_eq!(problem_of(&s), None);
    s.last_error = Some("cannot reach Postgres: connection refused".into());
    assert_eq!(problem_of(&s).as_deref(), Some("db: cannot reach Postgres: connection refused"));
}
