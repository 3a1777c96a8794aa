//! Reading one part of a YAML document at a time, so that a problem in one
//! section does not hide the problems in the others, each reported with its
//! path and line.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ConfigIssue;

#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Parses `a.b[2].c` into segments.
pub fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Seg::Key(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else { break };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_owned()));
        }
    }
    out
}

/// Descends along `path` and deserialises what it finds there as `T`
/// (`None` when the path is absent).
struct Descend<'p, T> {
    path: &'p [Seg],
    _t: PhantomData<T>,
}

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for Descend<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.path.split_first() {
            None => T::deserialize(d).map(Some),
            Some((Seg::Key(key), rest)) => d.deserialize_any(Down { key: Some(key), index: 0, rest, _t: PhantomData }),
            Some((Seg::Index(i), rest)) => d.deserialize_any(Down { key: None, index: *i, rest, _t: PhantomData }),
        }
    }
}

struct Down<'p, T> {
    key: Option<&'p str>,
    index: usize,
    rest: &'p [Seg],
    _t: PhantomData<T>,
}

impl<'de, T: de::Deserialize<'de>> Visitor<'de> for Down<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key {
            Some(k) => write!(f, "a mapping with `{k}`"),
            None => write!(f, "a list"),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(k) = map.next_key::<String>()? {
            if found.is_none() && Some(k.as_str()) == self.key {
                found = map.next_value_seed(Descend::<T> { path: self.rest, _t: PhantomData })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0;
        loop {
            if self.key.is_none() && i == self.index {
                match seq.next_element_seed(Descend::<T> { path: self.rest, _t: PhantomData })? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Deserialises the value at `path` (dotted, e.g. `cameras[1].source`) as `T`.
/// An error carries the full YAML path of the offending field and its line.
pub fn read_at<T: DeserializeOwned>(text: &str, path: &str) -> Result<Option<T>, ConfigIssue> {
    let segs = parse_path(path);
    let mut track = serde_path_to_error::Track::new();
    let res = serde_saphyr::with_deserializer_from_str(text, |de| {
        let de = serde_path_to_error::Deserializer::new(de, &mut track);
        Descend::<T> { path: &segs, _t: PhantomData }.deserialize(de)
    });
    res.map_err(|e| {
        let tracked = track.path().to_string();
        let path = if tracked == "." { String::new() } else { tracked };
        ConfigIssue { path, line: e.location().map(|l| l.line()), message: error_message(&e) }
    })
}

/// Checks that the text is well-formed YAML.
pub fn check_syntax(text: &str) -> Result<(), ConfigIssue> {
    serde_saphyr::from_str::<IgnoredAny>(text).map(|_| ()).map_err(|e| ConfigIssue {
        path: String::new(),
        line: e.location().map(|l| l.line()),
        message: format!("not valid YAML: {}", error_message(&e)),
    })
}

/// The line where the value at `path` starts, if it is present.
pub fn line_of(text: &str, path: &str) -> Option<u64> {
    read_at::<serde_saphyr::Spanned<IgnoredAny>>(text, path).ok().flatten().map(|s| s.referenced.line())
}

/// saphyr's message without the location suffix (we print the line ourselves).
fn error_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or(&full);
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if first.starts_with("line ")
        && let Some(i) = first.find(": ")
    {
        return first[i + 2..].to_owned();
    }
    match first.find(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("cameras[1].source.config"),
            vec![Seg::Key("cameras".into()), Seg::Index(1), Seg::Key("source".into()), Seg::Key("config".into())]
        );
    }

    #[test]
    fn reads_nested_values_and_locates_them() {
        let text = "a: 1\ncameras:\n  - name: x\n  - name: y\n    source:\n      port: 5\n";
        let v: Option<String> = read_at(text, "cameras[1].name").unwrap();
        assert_eq!(v.as_deref(), Some("y"));
        let missing: Option<String> = read_at(text, "cameras[3].name").unwrap();
        assert!(missing.is_none());
        assert_eq!(line_of(text, "cameras[1].source.port"), Some(6));
    }

    #[test]
    fn errors_carry_path_and_line() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            port: u16,
        }
        let text = "x: 1\nserver:\n  port: many\n";
        let err = read_at::<S>(text, "server").unwrap_err();
        assert_eq!(err.path, "server.port");
        assert_eq!(err.line, Some(3));
    }
}
