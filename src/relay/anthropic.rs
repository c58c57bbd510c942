//! Anthropic's Messages API behind OpenAI's chat completions: the request, the response and the
//! stream are translated both ways, so OpenAI clients use Claude models unchanged.
//!
//! Translated: system and developer messages (all of them, into `system`), text and image parts
//! (data URLs as base64 sources, http(s) URLs as url sources), function tools (`parameters` as
//! `input_schema`), `tool_choice` (auto, none, required as `any`, a named function as `tool`) and
//! `parallel_tool_calls: false`, assistant `tool_calls` as `tool_use` blocks, `tool` messages as
//! `tool_result` blocks (consecutive ones in one user turn), and back: `tool_use` blocks (whole,
//! or streamed as `content_block_start` plus `input_json_delta` events) as `tool_calls`. What
//! Anthropic cannot do (`n > 1`, `logprobs`, audio, non-function tools, JSON response formats)
//! is refused with a message saying why, for a 400.

use super::sse::{self, Event};
use super::Usage;
use serde_json::{json, Map, Value};

/// `max_tokens` is required by Anthropic; used when the client sets none and no limit applies.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Image types Anthropic accepts in base64 sources (its vision guide).
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// The text of a system, developer or tool message: a string or text parts only.
fn plain_text(content: &Value, at: &str) -> Result<String, String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(p.get("text").and_then(Value::as_str).unwrap_or("")),
                    other => {
                        return Err(format!(
                            "{at}.content[{j}]: only text parts can be sent here to an Anthropic \
                             model, not {}",
                            other.unwrap_or("a part without a type")
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(format!("{at}.content: a string or an array of parts")),
    }
}

/// An OpenAI `image_url` part as an Anthropic image block.
fn image_block(part: &Value, at: &str) -> Result<Value, String> {
    let url = part
        .pointer("/image_url/url")
        .or_else(|| part.get("image_url").filter(|u| u.is_string()))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}.image_url.url: required, a string"))?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (media, data) = rest.split_once(";base64,").ok_or_else(|| {
            format!("{at}.image_url.url: a data URL must be base64 (data:<type>;base64,...)")
        })?;
        let media = media.to_ascii_lowercase();
        if !IMAGE_TYPES.contains(&media.as_str()) {
            return Err(format!(
                "{at}.image_url.url: Anthropic models take {} images, not {media}",
                IMAGE_TYPES.join(", ")
            ));
        }
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
        );
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(format!(
        "{at}.image_url.url: an http(s) URL or a base64 data URL is needed for an Anthropic model"
    ))
}

/// A user message's content as Anthropic content: a string stays one, parts become blocks.
fn user_content(content: &Value, at: &str) -> Result<Value, String> {
    let parts = match content {
        Value::String(s) => return Ok(json!(s)),
        Value::Array(parts) => parts,
        _ => return Err(format!("{at}.content: a string or an array of parts")),
    };
    let mut blocks = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        match p.get("type").and_then(Value::as_str) {
            Some("text") => blocks.push(json!({"type": "text",
                "text": p.get("text").and_then(Value::as_str).unwrap_or("")})),
            Some("image_url") => blocks.push(image_block(p, &here)?),
            Some("input_audio") => {
                return Err(format!("{here}: Anthropic models take no audio input"))
            }
            other => {
                return Err(format!(
                "{here}: {} parts cannot be sent to an Anthropic model (text and image_url can)",
                other.unwrap_or("untyped")
            ))
            }
        }
    }
    Ok(Value::Array(blocks))
}

/// An assistant message's text and tool calls as Anthropic blocks.
fn assistant_content(m: &Value, at: &str) -> Result<Value, String> {
    if m.get("audio").is_some_and(|a| !a.is_null()) {
        return Err(format!("{at}.audio: Anthropic models take no audio"));
    }
    if m.get("function_call").is_some_and(|f| !f.is_null()) {
        return Err(format!(
            "{at}.function_call: the deprecated form is not translated; send tool_calls"
        ));
    }
    let text = plain_text(m.get("content").unwrap_or(&Value::Null), at)?;
    let calls = match m.get("tool_calls") {
        None | Some(Value::Null) => return Ok(json!(text)),
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(format!("{at}.tool_calls: an array")),
    };
    let mut blocks = Vec::new();
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for (j, c) in calls.iter().enumerate() {
        let here = format!("{at}.tool_calls[{j}]");
        let kind = c.get("type").and_then(Value::as_str).unwrap_or("function");
        if kind != "function" {
            return Err(format!(
                "{here}.type: {kind} tool calls cannot be sent to an Anthropic model"
            ));
        }
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{here}.id: required"))?;
        let name = c
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{here}.function.name: required"))?;
        let args = c
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        // Anthropic takes the arguments as an object, so they must parse as one.
        let input: Value = if args.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(args)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    format!("{here}.function.arguments: not a JSON object, which Anthropic needs")
                })?
        };
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(Value::Array(blocks))
}

/// OpenAI `tools` as Anthropic's.
fn tools(list: &Value) -> Result<Value, String> {
    let list = list.as_array().ok_or("tools: an array")?;
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "function" {
            return Err(format!(
                "tools[{i}].type: only function tools can be sent to an Anthropic model, not {}",
                if kind.is_empty() {
                    "an untyped tool"
                } else {
                    kind
                }
            ));
        }
        let f = t
            .get("function")
            .ok_or_else(|| format!("tools[{i}].function: required"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("tools[{i}].function.name: required"))?;
        let mut tool = json!({"name": name});
        if let Some(d) = f.get("description").and_then(Value::as_str) {
            tool["description"] = json!(d);
        }
        // Anthropic requires a schema; OpenAI's default is a function without parameters.
        tool["input_schema"] = match f.get("parameters") {
            Some(p) if p.is_object() => p.clone(),
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(_) => {
                return Err(format!(
                    "tools[{i}].function.parameters: a JSON Schema object"
                ))
            }
        };
        out.push(tool);
    }
    Ok(Value::Array(out))
}

/// OpenAI `tool_choice` as Anthropic's.
fn tool_choice(choice: &Value) -> Result<Value, String> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "none" => Ok(json!({"type": "none"})),
            "required" => Ok(json!({"type": "any"})),
            other => Err(format!(
                "tool_choice: {other} is not auto, none or required"
            )),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or("tool_choice.function.name: required")?;
            Ok(json!({"type": "tool", "name": name}))
        }
        _ => Err(
            "tool_choice: only auto, none, required or a named function can be sent to an \
             Anthropic model"
                .into(),
        ),
    }
}

/// Fields Anthropic has no equivalent of, refused rather than silently dropped: the client
/// would otherwise get an answer it did not ask for.
fn untranslatable(body: &Value) -> Option<String> {
    let n = body.get("n").filter(|v| !v.is_null());
    if n.is_some_and(|n| n.as_u64() != Some(1)) {
        return Some(
            "n: Anthropic models return one choice per request; send n = 1 or leave it out".into(),
        );
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true)
        || body.get("top_logprobs").is_some_and(|v| !v.is_null())
    {
        return Some("logprobs: Anthropic models do not return log probabilities".into());
    }
    let audio_out = body.get("audio").is_some_and(|v| !v.is_null())
        || body
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x == "audio"));
    if audio_out {
        return Some("audio: Anthropic models do not answer with audio".into());
    }
    match body
        .pointer("/response_format/type")
        .and_then(Value::as_str)
    {
        None | Some("text") => None,
        Some(kind) => Some(format!(
            "response_format: {kind} is not translated to Anthropic's Messages API; describe the \
             format in the prompt or use a tool"
        )),
    }
}

/// OpenAI chat request to an Anthropic messages request. Errors name what cannot be translated.
pub fn request(body: &Value, model: &str) -> Result<Value, String> {
    if let Some(why) = untranslatable(body) {
        return Err(why);
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: required, an array")?;
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    // Whether the last user turn in `out` holds tool results, which what follows joins: Anthropic
    // wants every result for one assistant turn in the next user turn.
    let mut results_turn = false;
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(plain_text(content, &at)?),
            "user" => {
                let c = user_content(content, &at)?;
                match out.last_mut() {
                    Some(last) if results_turn => {
                        let blocks = match c {
                            Value::String(s) => vec![json!({"type": "text", "text": s})],
                            Value::Array(b) => b,
                            _ => Vec::new(),
                        };
                        if let Some(a) = last["content"].as_array_mut() {
                            a.extend(blocks);
                        }
                    }
                    _ => out.push(json!({"role": "user", "content": c})),
                }
                results_turn = false;
            }
            "assistant" => {
                out.push(json!({"role": "assistant", "content": assistant_content(m, &at)?}));
                results_turn = false;
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{at}.tool_call_id: required"))?;
                let block = json!({"type": "tool_result", "tool_use_id": id,
                    "content": plain_text(content, &at)?});
                match out.last_mut() {
                    Some(last) if results_turn => {
                        if let Some(a) = last["content"].as_array_mut() {
                            a.push(block);
                        }
                    }
                    _ => out.push(json!({"role": "user", "content": [block]})),
                }
                results_turn = true;
            }
            other => {
                return Err(format!(
                    "{at}.role: {other} messages cannot be sent to an Anthropic model"
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
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        req["metadata"] = json!({"user_id": user});
    }
    let has_tools = match body.get("tools") {
        None | Some(Value::Null) => false,
        Some(t) => {
            req["tools"] = tools(t)?;
            true
        }
    };
    let mut choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(_) if !has_tools => return Err("tool_choice: only allowed with tools".into()),
        Some(c) => Some(tool_choice(c)?),
    };
    if has_tools && body.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        // `none` takes no such flag: no tool is called at all.
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(c) = choice {
        req["tool_choice"] = c;
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
        Some("refusal") => json!("content_filter"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

/// An Anthropic `tool_use` block's id, name and input as an OpenAI tool call.
fn tool_call(block: &Value) -> Value {
    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
    json!({
        "id": block.get("id").cloned().unwrap_or(json!("")),
        "type": "function",
        "function": {
            "name": block.get("name").cloned().unwrap_or(json!("")),
            "arguments": input.to_string(),
        },
    })
}

/// An Anthropic message as an OpenAI chat completion, with its usage.
pub fn response(msg: &Value, model: &str, created: i64) -> (Value, Usage) {
    let blocks = msg
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .map(tool_call)
        .collect();
    let usage = Usage {
        input: msg.pointer("/usage/input_tokens").and_then(Value::as_u64),
        output: msg.pointer("/usage/output_tokens").and_then(Value::as_u64),
    };
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    // OpenAI's content is null for an answer that is only tool calls.
    message.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            json!(text)
        },
    );
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let body = json!({
        "id": msg.get("id").cloned().unwrap_or(json!("msg")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(msg.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage.openai_json(),
    });
    (body, usage)
}

/// Turns Anthropic stream events into OpenAI `chat.completion.chunk` events.
#[derive(Default)]
pub struct StreamTranslator {
    pub id: String,
    pub model: String,
    pub created: i64,
    pub include_usage: bool,
    pub usage: Usage,
    /// Anthropic content-block index → OpenAI tool-call index, for the `tool_use` blocks seen
    /// so far (OpenAI counts tool calls from 0, Anthropic counts every block).
    pub tool_blocks: Vec<(u64, u64)>,
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

    /// The OpenAI tool-call index of Anthropic's content block `block`, if it is a `tool_use`.
    fn tool_index(&self, block: u64) -> Option<u64> {
        self.tool_blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, t)| *t)
    }

    /// The OpenAI bytes for one Anthropic event.
    pub fn event(&mut self, ev: &Event) -> Vec<u8> {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return Vec::new();
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        let block = v.get("index").and_then(Value::as_u64).unwrap_or(0);
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
            "content_block_start" => {
                let b = v.get("content_block").unwrap_or(&Value::Null);
                if b.get("type").and_then(Value::as_str) != Some("tool_use") {
                    return Vec::new();
                }
                let index = self.tool_blocks.len() as u64;
                self.tool_blocks.push((block, index));
                // The arguments follow as `input_json_delta` fragments; the block's own `input`
                // is `{}` until then (Anthropic's streaming reference).
                let call =
                    tool_call(&json!({"id": b.get("id"), "name": b.get("name"), "input": {}}));
                self.chunk(
                    json!({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""}}]}),
                    Value::Null,
                )
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("input_json_delta") => {
                        let part = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        match self.tool_index(block) {
                            Some(index) if !part.is_empty() => self.chunk(
                                json!({"tool_calls": [{"index": index,
                                    "function": {"arguments": part}}]}),
                                Value::Null,
                            ),
                            _ => Vec::new(),
                        }
                    }
                    // Thinking and signature deltas have no OpenAI counterpart.
                    _ => match delta.get("text").and_then(Value::as_str) {
                        Some(t) => self.chunk(json!({"content": t}), Value::Null),
                        None => Vec::new(),
                    },
                }
            }
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

    fn translator() -> StreamTranslator {
        StreamTranslator {
            model: "m".into(),
            include_usage: true,
            ..Default::default()
        }
    }

    fn ev(d: Value) -> Event {
        Event {
            name: None,
            data: d.to_string(),
            raw: vec![],
        }
    }

    /// The JSON chunks in translated bytes, `[DONE]` left out.
    fn chunks(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }

    #[test]
    fn system_and_developer_messages_all_move_to_the_system_field() {
        let r = request(
            &json!({"messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]}
            ], "max_tokens": 50, "stop": "END", "stream": true, "user": "u-1"}),
            "claude-sonnet-4-5",
        )
        .unwrap();
        assert_eq!(r["system"], "Be brief.\nAnswer in French.");
        assert_eq!(
            r["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        );
        assert_eq!(r["max_tokens"], 50);
        assert_eq!(r["stop_sequences"], json!(["END"]));
        assert_eq!(r["stream"], true);
        assert_eq!(r["metadata"], json!({"user_id": "u-1"}));
        assert!(r.get("tools").is_none() && r.get("tool_choice").is_none());
    }

    #[test]
    fn function_tools_and_each_tool_choice_become_anthropics() {
        let tools = json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": true}},
            {"type": "function", "function": {"name": "now"}}
        ]);
        let with = |choice: Value, parallel: Value| {
            request(
                &json!({"messages": [{"role": "user", "content": "x"}], "tools": tools,
                    "tool_choice": choice, "parallel_tool_calls": parallel}),
                "m",
            )
            .unwrap()
        };
        let r = with(Value::Null, Value::Null);
        assert_eq!(
            r["tools"],
            json!([
                {"name": "get_weather", "description": "Weather of a city",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}}
            ])
        );
        assert!(r.get("tool_choice").is_none());
        assert_eq!(
            with(json!("auto"), Value::Null)["tool_choice"],
            json!({"type": "auto"})
        );
        assert_eq!(
            with(json!("none"), json!(false))["tool_choice"],
            json!({"type": "none"})
        );
        assert_eq!(
            with(json!("required"), Value::Null)["tool_choice"],
            json!({"type": "any"})
        );
        assert_eq!(
            with(
                json!({"type": "function", "function": {"name": "now"}}),
                json!(false)
            )["tool_choice"],
            json!({"type": "tool", "name": "now", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            with(Value::Null, json!(false))["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn tool_calls_become_tool_use_blocks_and_consecutive_tool_results_one_user_turn() {
        let r = request(
            &json!({"messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24 C"}]},
                {"role": "user", "content": "Which is warmer?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_3", "type": "function", "function": {"name": "now", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_3", "content": "noon"}
            ]}),
            "m",
        )
        .unwrap();
        assert_eq!(
            r["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "24 C"},
                    {"type": "text", "text": "Which is warmer?"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_3", "name": "now", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_3", "content": "noon"}
                ]}
            ])
        );
    }

    #[test]
    fn image_parts_become_base64_or_url_image_sources() {
        let r = request(
            &json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]}]}),
            "m",
        )
        .unwrap();
        assert_eq!(
            r["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ])
        );
    }

    #[test]
    fn requests_anthropic_cannot_serve_are_refused_saying_why() {
        let user = json!([{"role": "user", "content": "x"}]);
        let refused = |extra: Value| {
            let mut body = json!({"messages": user});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            request(&body, "m").unwrap_err()
        };
        assert!(refused(json!({"n": 2})).starts_with("n: Anthropic models return one choice"));
        assert!(request(&json!({"messages": user, "n": 1}), "m").is_ok());
        assert!(refused(json!({"logprobs": true})).starts_with("logprobs:"));
        assert!(refused(json!({"top_logprobs": 2})).starts_with("logprobs:"));
        assert!(refused(json!({"modalities": ["text", "audio"]})).starts_with("audio:"));
        assert!(refused(json!({"response_format": {"type": "json_object"}}))
            .contains("json_object is not translated"));
        let e = refused(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}));
        assert!(
            e.contains("tools[0].type: only function tools") && e.contains("custom"),
            "{e}"
        );
        assert!(refused(json!({"tool_choice": "auto"})).contains("only allowed with tools"));
        let e = refused(json!({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}));
        assert_eq!(
            e,
            "messages[0].content[0]: Anthropic models take no audio input"
        );
        let e = refused(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]}));
        assert!(e.contains("not image/tiff"), "{e}");
        let e = refused(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]}));
        assert!(e.contains("http(s) URL or a base64 data URL"), "{e}");
        let e = refused(json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}]}]}));
        assert!(
            e.contains("messages[0].tool_calls[0].function.arguments: not a JSON object"),
            "{e}"
        );
        let e = refused(json!({"messages": [{"role": "tool", "content": "r"}]}));
        assert_eq!(e, "messages[0].tool_call_id: required");
        let e = refused(json!({"messages": [{"role": "function", "name": "f", "content": "r"}]}));
        assert!(e.contains("function messages cannot be sent"), "{e}");
    }

    #[test]
    fn a_message_becomes_a_chat_completion_with_usage() {
        let (body, usage) = response(
            &json!({"id": "msg_1", "content": [{"type": "text", "text": "echo: hi"}], "stop_reason": "end_turn", "usage": {"input_tokens": 7, "output_tokens": 3}}),
            "claude@Anthropic",
            5,
        );
        assert_eq!(body["choices"][0]["message"]["content"], "echo: hi");
        assert!(body["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
        );
        assert_eq!((usage.input, usage.output), (Some(7), Some(3)));
    }

    #[test]
    fn tool_use_blocks_become_tool_calls_with_finish_reason_tool_calls() {
        let (body, _) = response(
            &json!({"id": "msg_2", "stop_reason": "tool_use", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}
            ], "usage": {"input_tokens": 1, "output_tokens": 1}}),
            "m",
            0,
        );
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Checking.");
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}
            ])
        );
        let (only_calls, _) = response(
            &json!({"stop_reason": "tool_use", "content": [
                {"type": "tool_use", "id": "toolu_3", "name": "now", "input": {}}]}),
            "m",
            0,
        );
        assert_eq!(
            only_calls["choices"][0]["message"]["content"],
            Value::Null,
            "an answer of tool calls only has null content, as OpenAI's"
        );
    }

    #[test]
    fn the_stream_translates_event_by_event() {
        let mut t = translator();
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

    #[test]
    fn streamed_tool_use_blocks_become_tool_call_deltas_with_index_id_name_and_fragments() {
        let mut t = translator();
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_t", "usage": {"input_tokens": 4}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        let out: Vec<u8> = events
            .iter()
            .flat_map(|e| t.event(&ev(e.clone())))
            .collect();
        let deltas: Vec<Value> = chunks(&out)
            .into_iter()
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0").cloned())
            .collect();
        assert_eq!(
            deltas,
            vec![
                json!({"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
                json!({"index": 0, "function": {"arguments": "{\"city\": "}}),
                json!({"index": 0, "function": {"arguments": "\"Paris\"}"}}),
                json!({"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "now", "arguments": ""}}),
                json!({"index": 1, "function": {"arguments": "{}"}}),
            ]
        );
        let all = chunks(&out);
        assert!(all
            .iter()
            .any(|c| c["choices"][0]["delta"]["content"] == "Checking."));
        assert!(all
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
        assert_eq!(all.last().unwrap()["usage"]["total_tokens"], 13);
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("data: [DONE]\n\n"));
    }
}
