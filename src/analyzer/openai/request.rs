//! The chat-completions request: the answer's JSON schema, the system prompt,
//! the clip context and the frames as data URLs.

use base64::Engine as _;
use serde_json::{Value, json};

use super::OpenAiConfig;
use crate::domain::{Clip, FilterResult};
use crate::media::Jpeg;

/// Name of the JSON schema sent in `response_format`.
pub const SCHEMA_NAME: &str = "homesec_clip_analysis";

/// The JSON schema of the answer (strict mode: every property required, no others).
pub fn response_schema(activity_types: &[String]) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["risk_level", "activity_type", "summary", "entities_timeline", "requires_review"],
        "properties": {
            "risk_level": { "type": "string", "enum": ["low", "medium", "high"] },
            "activity_type": { "type": "string", "enum": activity_types },
            "summary": { "type": "string", "description": "One or two sentences for a phone notification." },
            "entities_timeline": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["ts_s", "entity", "description"],
                    "properties": {
                        "ts_s": { "type": "number", "description": "Seconds from the start of the clip." },
                        "entity": { "type": "string" },
                        "description": { "type": "string" }
                    }
                }
            },
            "requires_review": { "type": "boolean" }
        }
    })
}

fn system_prompt(cfg: &OpenAiConfig) -> String {
    format!(
        "{}\n\nAnswer only with a JSON object with these fields: risk_level (low, medium or high); \
         activity_type (exactly one of: {}); summary (one or two plain sentences); entities_timeline \
         (what each person, vehicle or animal does, in order, with ts_s in seconds from the start of the clip, \
         read from the frame times); requires_review (true or false).",
        cfg.base_prompt.trim(),
        cfg.activity_types.join(", ")
    )
}

/// The clip context the model gets before the frames.
pub fn clip_context(clip: &Clip, filter: &FilterResult, frames: usize) -> String {
    let mut s = format!(
        "Camera: {}\nClip: {} ({:.1} s long, starting {})\n",
        clip.camera,
        clip.clip_id,
        clip.duration_s(),
        crate::domain::rfc3339(clip.start_ms)
    );
    if filter.detections.is_empty() && filter.detected_classes.is_empty() {
        s.push_str(&format!(
            "Object detector ({}, {} frames checked): nothing detected.\n",
            filter.model, filter.sampled_frames
        ));
    } else {
        s.push_str(&format!("Object detector ({}, {} frames checked) found:\n", filter.model, filter.sampled_frames));
        for d in &filter.detections {
            s.push_str(&format!("- {} (confidence {:.2}) at {:.1} s\n", d.class, d.confidence, d.ts_s));
        }
        for c in &filter.detected_classes {
            if !filter.detections.iter().any(|d| &d.class == c) {
                s.push_str(&format!("- {c}\n"));
            }
        }
    }
    s.push_str(&format!("{frames} frames of the clip follow, in order, each preceded by its time."));
    s
}

/// The chat-completions request body.
pub fn request_body(cfg: &OpenAiConfig, clip: &Clip, filter: &FilterResult, frames: &[Jpeg]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut content = vec![json!({ "type": "text", "text": clip_context(clip, filter, frames.len()) })];
    for (i, f) in frames.iter().enumerate() {
        content.push(json!({ "type": "text", "text": format!("Frame {} at {:.1} s", i + 1, f.ts_s) }));
        content.push(json!({
            "type": "image_url",
            "image_url": { "url": format!("data:image/jpeg;base64,{}", b64.encode(&f.bytes)) }
        }));
    }
    let mut body = json!({
        "model": cfg.model,
        "messages": [
            { "role": "system", "content": system_prompt(cfg) },
            { "role": "user", "content": content }
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": { "name": SCHEMA_NAME, "strict": true, "schema": response_schema(&cfg.activity_types) }
        }
    });
    if let (Some(t), Some(obj)) = (cfg.temperature, body.as_object_mut()) {
        obj.insert("temperature".into(), json!(t));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::openai::default_activity_types;
    use crate::domain::Detection;

    fn types() -> Vec<String> {
        default_activity_types()
    }

    #[test]
    fn schema_requires_every_field_and_lists_the_activity_types() {
        let s = response_schema(&types());
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["required"].as_array().map(Vec::len), Some(5));
        assert_eq!(s["properties"]["activity_type"]["enum"], json!(types()));
        assert_eq!(s["properties"]["risk_level"]["enum"], json!(["low", "medium", "high"]));
        assert_eq!(s["properties"]["entities_timeline"]["items"]["required"], json!(["ts_s", "entity", "description"]));
    }

    #[test]
    fn request_body_carries_context_frames_and_schema() {
        let clip = Clip {
            clip_id: "front_1700000000".into(),
            camera: "front".into(),
            local_path: "/x.mp4".into(),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_012_500,
            source_backend: "folder".into(),
        };
        let filter = FilterResult {
            detected_classes: vec!["person".into()],
            alert_classes: vec!["person".into()],
            confidence: 0.9,
            model: "yolox_nano".into(),
            sampled_frames: 20,
            detections: vec![Detection::new("person", 0.9, [0.0; 4], 3.25)],
        };
        let frames = vec![
            Jpeg { ts_s: 0.0, width: 2, height: 2, bytes: vec![0xFF, 0xD8, 0xFF, 0xD9] },
            Jpeg { ts_s: 6.0, width: 2, height: 2, bytes: vec![0xFF, 0xD8, 0xFF, 0xD9] },
        ];
        let cfg = OpenAiConfig { temperature: Some(0.2), ..OpenAiConfig::with_model("m") };
        let body = request_body(&cfg, &clip, &filter, &frames);
        assert_eq!(body["model"], "m");
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        let content = body["messages"][1]["content"].as_array().expect("parts");
        let text = content[0]["text"].as_str().expect("text");
        assert!(text.contains("Camera: front"), "{text}");
        assert!(text.contains("12.5 s long"), "{text}");
        assert!(text.contains("person (confidence 0.90) at 3.2 s"), "{text}");
        let images: Vec<&str> = content.iter().filter_map(|p| p["image_url"]["url"].as_str()).collect();
        assert_eq!(images, vec!["data:image/jpeg;base64,/9j/2Q==", "data:image/jpeg;base64,/9j/2Q=="]);
        assert!(body["messages"][0]["content"].as_str().expect("system").contains("person_passing"));
        assert!(OpenAiConfig::with_model("m").temperature.is_none());
        assert!(request_body(&OpenAiConfig::with_model("m"), &clip, &filter, &frames).get("temperature").is_none());
    }
}
