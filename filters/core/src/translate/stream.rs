//! Streamed responses, event by event: Anthropic SSE -> OpenAI chunks and OpenAI chunks ->
//! Anthropic SSE. Each translator holds only the unfinished event's bytes and the little state
//! the target dialect needs (ids, open content blocks, usage until the end), never the reply.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use serde_json::{json, Value};

use super::response::{anthropic_usage, finish_reason, openai_usage, stop_reason};
use super::sse::{SseItem, SseReader};
use super::Exchange;

fn openai_event(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

fn anthropic_event(out: &mut Vec<u8>, v: &Value) {
    let name = v["type"].as_str().unwrap_or("message");
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

const TOO_LARGE: &str = "a streamed event exceeded the gateway's translation limit";

/// Anthropic Messages SSE from the provider -> OpenAI `chat.completion.chunk`s for the client.
#[derive(Debug)]
pub struct AnthropicToOpenai {
    reader: SseReader,
    ex: Exchange,
    id: String,
    model: String,
    usage: Value,
    /// Anthropic content block index -> OpenAI tool call index.
    tools: BTreeMap<u64, u64>,
    /// Every chunk's bytes up to its delta (known once `message_start` gave id and model).
    head: String,
    done: bool,
}

impl AnthropicToOpenai {
    /// A translator for the answer to `ex`; events over `max` bytes end the stream with an error.
    pub fn new(ex: Exchange, max: usize) -> Self {
        Self {
            reader: SseReader::new(max),
            model: ex.model.clone(),
            ex,
            id: String::new(),
            usage: json!({}),
            tools: BTreeMap::new(),
            head: String::new(),
            done: false,
        }
    }

    /// Translates one chunk of the provider's stream; returns what the client gets now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let items = self.reader.feed(chunk);
        self.items(items)
    }

    /// The provider's stream ended; returns the last bytes for the client.
    pub fn finish(&mut self) -> Vec<u8> {
        let items = self.reader.finish();
        self.items(items)
    }

    /// The usage so far, in OpenAI's shape (complete once the stream ended).
    pub fn usage(&self) -> Value {
        openai_usage(&self.usage)
    }

    fn items(&mut self, items: Vec<SseItem>) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            if self.done {
                break;
            }
            match item {
                SseItem::TooLarge => self.error(&mut out, "api_error", TOO_LARGE),
                SseItem::Event { data, .. } => {
                    let Ok(v) = serde_json::from_str::<Value>(&data) else {
                        continue;
                    };
                    self.event(&mut out, &v);
                }
            }
        }
        out
    }

    /// One `chat.completion.chunk` event. Written by hand around the serialized delta: the
    /// envelope is the same for every event of the stream, and building it as a JSON value
    /// per event was most of a streamed request's translation cost.
    fn chunk(&mut self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        self.head(out);
        out.extend_from_slice(delta.to_string().as_bytes());
        self.tail(out, finish);
    }

    /// A chunk whose delta is only `content: text` (most events of a stream).
    fn text(&mut self, out: &mut Vec<u8>, text: &str) {
        self.head(out);
        out.extend_from_slice(b"{\"content\":");
        out.extend_from_slice(Value::from(text).to_string().as_bytes());
        out.push(b'}');
        self.tail(out, None);
    }

    fn head(&mut self, out: &mut Vec<u8>) {
        if self.head.is_empty() {
            self.head = format!(
                "data: {{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":{},\"choices\":[{{\"index\":0,\"delta\":",
                Value::from(self.id.as_str()),
                self.ex.created,
                Value::from(self.model.as_str())
            );
        }
        out.extend_from_slice(self.head.as_bytes());
    }

    fn tail(&self, out: &mut Vec<u8>, finish: Option<&str>) {
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => out.extend_from_slice(Value::from(f).to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]}\n\n");
    }

    fn error(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        openai_event(
            out,
            &json!({"error": {"message": message, "type": kind, "param": null, "code": kind}}),
        );
        self.done = true;
    }

    fn event(&mut self, out: &mut Vec<u8>, v: &Value) {
        match v["type"].as_str().unwrap_or_default() {
            "message_start" => {
                let m = &v["message"];
                let id = m["id"].as_str().unwrap_or_default();
                self.id = format!("chatcmpl-{}", id.strip_prefix("msg_").unwrap_or(id));
                if let Some(model) = m["model"].as_str() {
                    self.model = model.to_string();
                }
                merge(&mut self.usage, &m["usage"]);
                self.head.clear();
                self.chunk(out, json!({"role": "assistant", "content": ""}), None);
            }
            "content_block_start" => {
                let b = &v["content_block"];
                let index = v["index"].as_u64().unwrap_or(0);
                match b["type"].as_str() {
                    Some("tool_use") => {
                        let n = self.tools.len() as u64;
                        self.tools.insert(index, n);
                        self.chunk(
                            out,
                            json!({"tool_calls": [{"index": n, "id": b["id"], "type": "function",
                                "function": {"name": b["name"], "arguments": ""}}]}),
                            None,
                        );
                    }
                    Some("text") => {
                        if let Some(t) = b["text"].as_str().filter(|t| !t.is_empty()) {
                            self.text(out, t);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        self.text(out, d["text"].as_str().unwrap_or_default());
                    }
                    Some("input_json_delta") => {
                        let index = v["index"].as_u64().unwrap_or(0);
                        let n = self.tools.get(&index).copied().unwrap_or(0);
                        self.chunk(
                            out,
                            json!({"tool_calls": [{"index": n,
                                "function": {"arguments": d["partial_json"]}}]}),
                            None,
                        );
                    }
                    Some("thinking_delta") => {
                        self.chunk(out, json!({"reasoning_content": d["thinking"]}), None);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                merge(&mut self.usage, &v["usage"]);
                let reason = v["delta"]["stop_reason"].as_str().map(finish_reason);
                self.chunk(out, json!({}), reason);
            }
            "message_stop" => {
                if self.ex.include_usage {
                    openai_event(
                        out,
                        &json!({"id": self.id, "object": "chat.completion.chunk",
                            "created": self.ex.created, "model": self.model, "choices": [],
                            "usage": self.usage()}),
                    );
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
            "error" => {
                let e = &v["error"];
                let kind = e["type"].as_str().unwrap_or("api_error").to_string();
                let message = e["message"]
                    .as_str()
                    .unwrap_or("provider error")
                    .to_string();
                self.error(out, &kind, &message);
            }
            _ => {}
        }
    }
}

/// Copies the numeric usage fields of `from` into `into` (later events restate totals).
fn merge(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in from {
            if v.is_u64() {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    Tool(u64),
}

/// OpenAI chunks from the provider -> Anthropic Messages SSE for the client.
#[derive(Debug)]
pub struct OpenaiToAnthropic {
    reader: SseReader,
    ex: Exchange,
    started: bool,
    /// The open content block and its index.
    open: Option<(Block, u64)>,
    next: u64,
    /// OpenAI tool call index -> content block index.
    tools: BTreeMap<u64, u64>,
    finish: Option<String>,
    matched: Option<String>,
    usage: Value,
    done: bool,
}

impl OpenaiToAnthropic {
    /// A translator for the answer to `ex`; events over `max` bytes end the stream with an error.
    pub fn new(ex: Exchange, max: usize) -> Self {
        Self {
            reader: SseReader::new(max),
            ex,
            started: false,
            open: None,
            next: 0,
            tools: BTreeMap::new(),
            finish: None,
            matched: None,
            usage: Value::Null,
            done: false,
        }
    }

    /// Translates one chunk of the provider's stream; returns what the client gets now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let items = self.reader.feed(chunk);
        self.items(items)
    }

    /// The provider's stream ended. A stream that gave its finish reason but no `[DONE]` is
    /// closed properly; one cut before its finish reason is left cut, so the client sees it
    /// was.
    pub fn finish(&mut self) -> Vec<u8> {
        let items = self.reader.finish();
        let mut out = self.items(items);
        if !self.done && self.finish.is_some() {
            self.end(&mut out);
        }
        out
    }

    /// The usage so far, in Anthropic's shape (complete once the stream ended).
    pub fn usage(&self) -> Value {
        anthropic_usage(&self.usage)
    }

    fn items(&mut self, items: Vec<SseItem>) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            if self.done {
                break;
            }
            match item {
                SseItem::TooLarge => self.error(&mut out, "api_error", TOO_LARGE),
                SseItem::Event { data, .. } => {
                    if data.trim() == "[DONE]" {
                        self.end(&mut out);
                        continue;
                    }
                    // Typed and borrowed: most of a chunk (ids, logprobs) is never looked at.
                    let Ok(c) = serde_json::from_str::<Chunk<'_>>(&data) else {
                        continue;
                    };
                    self.chunk(&mut out, c);
                }
            }
        }
        out
    }

    fn error(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        anthropic_event(
            out,
            &json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
        self.done = true;
    }

    fn start(&mut self, out: &mut Vec<u8>, id: Option<&str>, model: Option<&str>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = id.unwrap_or_default();
        let id = format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id));
        let model = model.unwrap_or(&self.ex.model).to_string();
        // Input tokens are not known before the end of an OpenAI stream: message_delta
        // carries them (the Anthropic SDKs take usage from both events).
        anthropic_event(
            out,
            &json!({"type": "message_start", "message": {"id": id, "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            anthropic_event(out, &json!({"type": "content_block_stop", "index": index}));
        }
    }

    /// Makes `kind` the open block (closing another), starting it with `start`.
    fn open(&mut self, out: &mut Vec<u8>, kind: Block, start: Value) -> u64 {
        if let Some((k, index)) = self.open {
            if k == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.next;
        self.next += 1;
        anthropic_event(
            out,
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        self.open = Some((kind, index));
        index
    }

    fn chunk(&mut self, out: &mut Vec<u8>, c: Chunk<'_>) {
        if let Some(e) = c.error.filter(|e| !e.is_null()) {
            let message = e["message"]
                .as_str()
                .unwrap_or("provider error")
                .to_string();
            self.error(out, "api_error", &message);
            return;
        }
        self.start(out, c.id.as_deref(), c.model.as_deref());
        if let Some(u) = c.usage.filter(Value::is_object) {
            self.usage = u;
        }
        let Some(choice) = c.choices.into_iter().next() else {
            return;
        };
        let delta = choice.delta;
        if self.ex.thinking {
            if let Some(r) = delta
                .reasoning_content
                .or(delta.reasoning)
                .filter(|r| !r.is_empty())
            {
                let index = self.open(
                    out,
                    Block::Thinking,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                );
                anthropic_event(
                    out,
                    &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "thinking_delta", "thinking": r}}),
                );
            }
        }
        if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
            let index = self.open(out, Block::Text, json!({"type": "text", "text": ""}));
            // By hand, as most events of a stream are text deltas (see AnthropicToOpenai::chunk).
            out.extend_from_slice(
                format!(
                    "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}\n\n",
                    Value::from(t.as_ref())
                )
                .as_bytes(),
            );
        }
        for call in delta.tool_calls.unwrap_or_default() {
            let n = call.index;
            let index = match self.tools.get(&n) {
                Some(&i) => i,
                None => {
                    let i = self.open(
                        out,
                        Block::Tool(n),
                        json!({"type": "tool_use", "id": call.id.as_deref().unwrap_or_default(),
                            "name": call.function.name.as_deref().unwrap_or_default(),
                            "input": {}}),
                    );
                    self.tools.insert(n, i);
                    i
                }
            };
            if let Some(a) = call.function.arguments.filter(|a| !a.is_empty()) {
                anthropic_event(
                    out,
                    &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": a}}),
                );
            }
        }
        if let Some(f) = choice.finish_reason {
            self.finish = Some(f.into_owned());
        }
        if let Some(Value::String(m)) = choice.stop_reason {
            self.matched = Some(m);
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out, None, None);
        self.close(out);
        let reason = stop_reason(
            self.finish.as_deref().unwrap_or("stop"),
            self.matched.as_deref(),
        );
        let sequence = match (reason, &self.matched) {
            ("stop_sequence", Some(m)) => Value::from(m.as_str()),
            _ => Value::Null,
        };
        anthropic_event(
            out,
            &json!({"type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": self.usage()}),
        );
        anthropic_event(out, &json!({"type": "message_stop"}));
        self.done = true;
    }
}

/// The fields of an OpenAI `chat.completion.chunk` the translation reads.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "null_default")]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default, deserialize_with = "null_default")]
    delta: Delta<'a>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
    /// vLLM: the matched stop string (or token id).
    #[serde(default)]
    stop_reason: Option<Value>,
}

#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default, deserialize_with = "null_default")]
    index: u64,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "null_default")]
    function: FunctionDelta<'a>,
}

#[derive(Deserialize, Default)]
struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// `null` read as the default (servers write `"choices": null`, `"delta": null`).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
