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
fn tls_settings_are_checked_without_repeating_the_dsn() {
    let dsn = "postgresql://u:pw-9x@h/db?sslmode=verify-full&sslrootcert=/nowhere/ca.pem";
    let text = SyncSettings::from_dsn("DB", dsn, 10).unwrap_err().to_string();
    assert!(text.contains("DB") && text.contains("sslrootcert: cannot read /nowhere/ca.pem"), "{text}");
    assert!(!text.contains("pw-9x"), "{text}");
    let s = SyncSettings::from_dsn("DB", "postgresql://u:pw@h/db?sslmode=disable", 10).unwrap();
    assert!(s.tls.is_none());
    for mode in ["prefer", "require", "verify-ca", "verify-full"] {
        let s = SyncSettings::from_dsn("DB", &format!("postgresql://u:pw@h/db?sslmode={mode}"), 10).unwrap();
        assert!(s.tls.is_some(), "{mode}");
    }
}

#[test]
fn the_db_check_fails_only_with_an_error() {
    let mut s = SyncState::default();
    assert_eq!(problem_of(&s), None);
    s.last_error = Some("cannot reach Postgres: connection refused".into());
    assert_eq!(problem_of(&s).as_deref(), Some("db: cannot reach Postgres: connection refused"));
}
