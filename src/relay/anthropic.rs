//! Anthropic's Messages API behind OpenAI's chat completions: the request, the response and the
//! stream are translated both ways, so OpenAI clients use Claude models unchanged.

use super::sse::{self, Event};
use super::Usage;
use serde_json::{json, Value};

/// `max_tokens` is required by Anthropic; used when the client sets none and no limit applies.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI chat request to an Anthropic messages request. Errors name what cannot be translated.
pub fn request(body: &Value, model: &str) -> Result<Value, String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: required, an array")?;
    let mut system = Vec::new();
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(content)),
            "user" | "assistant" => out.push(json!({"role": role, "content": text_of(content)})),
            other => {
                return Err(format!(
                    "messages[{i}].role: {other} messages cannot be sent to an Anthropic model"
                ))
            }
        }
    }
    let max = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut req = json!({"model": model, "max_tokens": max, "messages": out});
    if !system.is_empty() {
        req["system"] = json!(system.join("\n"));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "top_p")] {
        if let Some(v) = body.get(from) {
            req[to] = v.clone();
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => req["stop_sequences"] = json!([s]),
        Some(Value::Array(a)) => req["stop_sequences"] = json!(a),
        _ => {}
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        req["stream"] = json!(true);
    }
    Ok(req)
}

fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

/// An Anthropic message as an OpenAI chat completion, with its usage.
pub fn response(msg: &Value, model: &str, created: i64) -> (Value, Usage) {
    let text: String = msg
        .get("content")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let usage = Usage {
        input: msg.pointer("/usage/input_tokens").and_then(Value::as_u64),
        output: msg.pointer("/usage/output_tokens").and_then(Value::as_u64),
    };
    let body = json!({
        "id": msg.get("id").cloned().unwrap_or(json!("msg")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason(msg.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage.openai_json(),
    });
    (body, usage)
}

/// Turns Anthropic stream events into OpenAI `chat.completion.chunk` events.
pub struct StreamTranslator {
    pub id: String,
    pub model: String,
    pub created: i64,
    pub include_usage: bool,
    pub usage: Usage,
}

impl StreamTranslator {
    fn chunk(&self, delta: Value, finish: Value) -> Vec<u8> {
        sse::data(
            &json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string(),
        )
    }

    /// The OpenAI bytes for one Anthropic event.
    pub fn event(&mut self, ev: &Event) -> Vec<u8> {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return Vec::new();
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "message_start" => {
                if let Some(id) = v.pointer("/message/id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                self.usage.input = v
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_u64);
                self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            "content_block_delta" => match v.pointer("/delta/text").and_then(Value::as_str) {
                Some(t) => self.chunk(json!({"content": t}), Value::Null),
                None => Vec::new(),
            },
            "message_delta" => {
                if let Some(n) = v.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.usage.output = Some(n);
                }
                let stop = v.pointer("/delta/stop_reason").and_then(Value::as_str);
                self.chunk(json!({}), finish_reason(stop))
            }
            "message_stop" => {
                let mut out = Vec::new();
                if self.include_usage {
                    out.extend(sse::data(
                        &json!({
                            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                            "model": self.model, "choices": [], "usage": self.usage.openai_json(),
                        })
                        .to_string(),
                    ));
                }
                out.extend(sse::data("[DONE]"));
                out
            }
            "error" => {
                let msg = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error");
                sse::data(&json!({"error": {"message": msg, "type": "upstream_error"}}).to_string())
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_messages_move_to_the_system_field() {
        let r = request(
            &json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_tokens": 50, "stop": "END", "stream": true}),
            "claude-sonnet-4-5",
        )
        .unwrap();
        assert_eq!(r["system"], "Be brief.");
        assert_eq!(r["messages"], json!([{"role": "user", "content": "Hi"}]));
        assert_eq!(r["max_tokens"], 50);
        assert_eq!(r["stop_sequences"], json!(["END"]));
        assert_eq!(r["stream"], true);
        assert!(request(
            &json!({"messages": [{"role": "tool", "content": "x"}]}),
            "m"
        )
        .is_err());
    }

    #[test]
    fn a_message_becomes_a_chat_completion_with_usage() {
        let (body, usage) = response(
            &json!({"id": "msg_1", "content": [{"type": "text", "text": "echo: hi"}], "stop_reason": "end_turn", "usage": {"input_tokens": 7, "output_tokens": 3}}),
            "claude@Anthropic",
            5,
        );
        assert_eq!(body["choices"][0]["message"]["content"], "echo: hi");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
        );
        assert_eq!((usage.input, usage.output), (Some(7), Some(3)));
    }

    #[test]
    fn the_stream_translates_event_by_event() {
        let mut t = StreamTranslator {
            id: String::new(),
            model: "m".into(),
            created: 0,
            include_usage: true,
            usage: Usage::default(),
        };
        let ev = |d: Value| Event {
            name: None,
            data: d.to_string(),
            raw: vec![],
        };
        let first = String::from_utf8(t.event(&ev(json!({"type": "message_start", "message": {"id": "msg_9", "usage": {"input_tokens": 4}}})))).unwrap();
        assert!(first.contains("\"role\":\"assistant\""));
        let delta = String::from_utf8(t.event(&ev(
            json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "he"}}),
        )))
        .unwrap();
        assert!(delta.contains("\"content\":\"he\"") && delta.contains("msg_9"));
        t.event(&ev(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}})));
        let end = String::from_utf8(t.event(&ev(json!({"type": "message_stop"})))).unwrap();
        assert!(end.contains("\"total_tokens\":6"));
        assert!(end.ends_with("data: [DONE]\n\n"));
    }
}
