//! Reading the answer: the chat-completions response, refusals, and the
//! analysis JSON checked field by field (local servers do not all enforce the
//! schema).

use serde_json::Value;

use crate::analyzer::VlmError;
use crate::domain::{AnalysisResult, RiskLevel, TimelineEntry};

fn malformed(msg: impl Into<String>) -> VlmError {
    VlmError::Malformed(msg.into())
}

/// The text of a message's `content`: a string, or text parts.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let text: String = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
            (!text.is_empty()).then_some(text)
        }
        _ => None,
    }
}

/// Strips a Markdown code fence some local models put around JSON.
fn strip_fence(s: &str) -> &str {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("```") else { return t };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

fn str_field<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, VlmError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(malformed(format!("`{key}` must be a string, got {}", kind(other)))),
        None => Err(malformed(format!("`{key}` is missing"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the answer JSON (the assistant message's content) into an [`AnalysisResult`].
pub fn parse_analysis(content: &str, activity_types: &[String], model: &str) -> Result<AnalysisResult, VlmError> {
    let text = strip_fence(content);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| malformed(format!("content is not JSON ({e}): {}", excerpt(text, 120))))?;
    let Value::Object(obj) = value else {
        return Err(malformed(format!("content is {}, not a JSON object", kind(&value))));
    };
    let risk_level = match str_field(&obj, "risk_level")?.trim().to_ascii_lowercase().as_str() {
        "low" => RiskLevel::Low,
        "medium" => RiskLevel::Medium,
        "high" => RiskLevel::High,
        other => return Err(malformed(format!("risk_level `{other}` is not low, medium or high"))),
    };
    let activity = str_field(&obj, "activity_type")?.trim();
    let activity_type = activity_types.iter().find(|a| a.eq_ignore_ascii_case(activity)).cloned().ok_or_else(|| {
        malformed(format!(
            "activity_type `{activity}` is not one of the configured types ({})",
            activity_types.join(", ")
        ))
    })?;
    let summary = str_field(&obj, "summary")?.trim().to_owned();
    if summary.is_empty() {
        return Err(malformed("summary is empty"));
    }
    let requires_review = match obj.get("requires_review") {
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(malformed(format!("`requires_review` must be a boolean, got {}", kind(other)))),
        None => return Err(malformed("`requires_review` is missing")),
    };
    let items = match obj.get("entities_timeline") {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(malformed(format!("`entities_timeline` must be an array, got {}", kind(other)))),
        None => return Err(malformed("`entities_timeline` is missing")),
    };
    let mut entities_timeline = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(e) = item else {
            return Err(malformed(format!("entities_timeline[{i}] is {}, not an object", kind(item))));
        };
        let ts_s = match e.get("ts_s") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0) as f32,
            Some(other) => {
                return Err(malformed(format!("entities_timeline[{i}].ts_s must be a number, got {}", kind(other))));
            }
            None => return Err(malformed(format!("entities_timeline[{i}].ts_s is missing"))),
        };
        let entity = str_field(e, "entity").map_err(|err| malformed(format!("entities_timeline[{i}]: {err}")))?;
        let description =
            str_field(e, "description").map_err(|err| malformed(format!("entities_timeline[{i}]: {err}")))?;
        entities_timeline.push(TimelineEntry { ts_s, entity: entity.to_owned(), description: description.to_owned() });
    }
    Ok(AnalysisResult {
        risk_level,
        activity_type,
        summary,
        entities_timeline,
        requires_review,
        model: model.to_owned(),
    })
}

/// Reads a chat-completions response body: `choices[0].message` → refusal or analysis.
/// `configured_model` is used when the response does not name its model.
pub fn parse_response(
    body: &[u8],
    activity_types: &[String],
    configured_model: &str,
) -> Result<AnalysisResult, VlmError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("response body is not JSON: {e}")))?;
    let choice =
        v.get("choices").and_then(Value::as_array).and_then(|c| c.first()).ok_or_else(|| match v.get("error") {
            // some servers answer 200 with an error object
            Some(err) => {
                let msg = err.get("message").and_then(Value::as_str).map_or_else(|| err.to_string(), str::to_owned);
                malformed(format!("response has no choices but an error: {}", excerpt(&msg, 200)))
            }
            None => malformed("response has no choices"),
        })?;
    let message = choice.get("message").ok_or_else(|| malformed("choices[0] has no message"))?;
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.trim().is_empty()) {
        return Err(VlmError::Refused(refusal.to_owned()));
    }
    let content = message.get("content").and_then(content_text).ok_or_else(|| {
        let reason = choice.get("finish_reason").and_then(Value::as_str).unwrap_or("unknown");
        malformed(format!("message has no content (finish_reason {reason})"))
    })?;
    let model = v.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(configured_model);
    parse_analysis(&content, activity_types, model).map_err(|e| match (e, choice.get("finish_reason")) {
        (VlmError::Malformed(m), Some(Value::String(r))) if r == "length" => {
            malformed(format!("{m} (the answer was cut off: finish_reason length)"))
        }
        (e, _) => e,
    })
}

/// The first `n` characters of `s` on one line.
pub(super) fn excerpt(s: &str, n: usize) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() > n {
        format!("{}…", trimmed.chars().take(n).collect::<String>())
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::analyzer::openai::default_activity_types;

    fn types() -> Vec<String> {
        default_activity_types()
    }

    fn good_answer() -> String {
        json!({
            "risk_level": "low",
            "activity_type": "delivery",
            "summary": "A courier leaves a parcel at the door.",
            "entities_timeline": [{ "ts_s": 1.5, "entity": "person", "description": "walks to the door" }],
            "requires_review": false
        })
        .to_string()
    }

    fn completion(content: Value) -> Vec<u8> {
        json!({
            "id": "chatcmpl-1",
            "model": "gpt-4o-2024-08-06",
            "choices": [{ "index": 0, "finish_reason": "stop",
                "message": { "role": "assistant", "content": content, "refusal": null } }]
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_valid_answer_becomes_an_analysis() {
        let a = parse_response(&completion(json!(good_answer())), &types(), "cfg-model").expect("ok");
        assert_eq!(a.risk_level, RiskLevel::Low);
        assert_eq!(a.activity_type, "delivery");
        assert_eq!(a.entities_timeline.len(), 1);
        assert_eq!(a.entities_timeline[0].ts_s, 1.5);
        assert!(!a.requires_review);
        assert_eq!(a.model, "gpt-4o-2024-08-06");
        // content as parts, fenced, and no model in the response
        let fenced = format!("```json\n{}\n```", good_answer());
        let body = json!({ "choices": [{ "message": { "content": [{ "type": "text", "text": fenced }] } }] });
        let a = parse_response(body.to_string().as_bytes(), &types(), "cfg-model").expect("ok");
        assert_eq!(a.model, "cfg-model");
    }

    #[test]
    fn bad_answers_say_what_is_wrong() {
        let cases: Vec<(Value, &str)> = vec![
            (json!("Sure! The clip shows a person."), "not JSON"),
            (json!("[1,2]"), "not a JSON object"),
            (json!(good_answer().replace("delivery", "dancing")), "activity_type `dancing`"),
            (json!(good_answer().replace("\"low\"", "\"severe\"")), "risk_level `severe`"),
            (json!(good_answer().replace("false", "\"no\"")), "requires_review"),
            (json!(good_answer().replace("1.5", "\"soon\"")), "entities_timeline[0].ts_s"),
            (
                json!(r#"{"risk_level":"low","activity_type":"delivery","summary":"x","requires_review":true}"#),
                "entities_timeline",
            ),
            (Value::Null, "no content"),
        ];
        for (content, expected) in cases {
            match parse_response(&completion(content.clone()), &types(), "m") {
                Err(VlmError::Malformed(m)) => assert!(m.contains(expected), "{m:?} should mention {expected:?}"),
                other => panic!("{content}: expected Malformed, got {other:?}"),
            }
        }
        let err = br#"{"error": {"message": "model not loaded", "type": "server_error"}}"#;
        match parse_response(err, &types(), "m") {
            Err(VlmError::Malformed(m)) => assert!(m.contains("model not loaded"), "{m}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
        for body in [&b"<html>502</html>"[..], br#"{"choices": []}"#, br#"{"choices": [{}]}"#] {
            assert!(matches!(parse_response(body, &types(), "m"), Err(VlmError::Malformed(_))));
        }
    }

    #[test]
    fn refusals_are_reported() {
        let body = json!({ "choices": [{ "message": { "content": null, "refusal": "I can't help with that." } }] });
        match parse_response(body.to_string().as_bytes(), &types(), "m") {
            Err(VlmError::Refused(r)) => assert_eq!(r, "I can't help with that."),
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        assert_eq!(excerpt("a\nb", 10), "a b");
        assert_eq!(excerpt(&"x".repeat(400), 300).chars().count(), 301);
    }
}
