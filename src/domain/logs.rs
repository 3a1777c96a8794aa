//! A log record captured for the fleet (Postgres `logs`): what the daemon
//! logged, when, how severe, and its structured fields. Plain data.

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

use super::UnixMillis;

/// How severe a record is, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Archive, RkyvSerialize, RkyvDeserialize)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// As `tracing` prints it: `ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "ERROR",
            LogLevel::Warn => "WARN",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
            LogLevel::Trace => "TRACE",
        }
    }
}

/// The value of one structured field.
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub enum FieldValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// One structured field of a record (`camera = "porch"`).
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct LogField {
    pub name: String,
    pub value: FieldValue,
}

/// One log event as it is kept until Postgres has it.
#[derive(Clone, Debug, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct LogRecord {
    /// Random, given when the record is captured and kept with it: the key
    /// that makes a resend after a crash a no-op in Postgres (`logs.id`).
    pub id: i64,
    pub ts_ms: UnixMillis,
    pub level: LogLevel,
    /// The module that logged it (`homesec::sources::folder`).
    pub target: String,
    pub message: String,
    /// The event's fields, then those of the spans it happened in.
    pub fields: Vec<LogField>,
}

impl LogRecord {
    /// The value of the field `name`, if the record has it.
    pub fn field(&self, name: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|f| f.name == name).map(|f| &f.value)
    }
}
