//! The OpenAI endpoints beyond chat completions: Responses (JSON and its SSE event stream),
//! streamed completions, images, audio (multipart uploads and speech), moderations, rerank,
//! files and batches. Same rule as `replies.rs`: one word is one token, so a test predicts every
//! figure from what it sent.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use hyper::{HeaderMap, Method};
use serde_json::{json, Value};

use crate::controls::Controls;
use crate::replies::Reply;

/// Fixed timestamps so replies are reproducible.
const CREATED: u64 = 1_700_000_000;

/// A reply of one of these endpoints.
pub enum More {
    /// JSON or SSE, as `replies` builds them.
    Reply(Reply),
    /// Bytes of another type (speech audio, a file's content, a plain-text transcript).
    Bytes(u16, String, Vec<u8>),
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Every text of a Responses `input` (a string, or items whose `content` is a string or parts,
/// and `function_call_output` items' `output`), with `instructions`.
fn responses_prompt(req: &Value) -> (String, String) {
    let mut texts: Vec<String> = Vec::new();
    if let Some(s) = req.get("instructions").and_then(Value::as_str) {
        texts.push(s.to_string());
    }
    match req.get("input") {
        Some(Value::String(s)) => texts.push(s.clone()),
        Some(Value::Array(items)) => {
            for item in items {
                match item.get("content") {
                    Some(Value::String(s)) => texts.push(s.clone()),
                    Some(Value::Array(parts)) => texts.extend(
                        parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(Value::as_str))
                            .map(String::from),
                    ),
                    _ => {}
                }
                if let Some(s) = item.get("output").and_then(Value::as_str) {
                    texts.push(s.to_string());
                }
            }
        }
        _ => {}
    }
    let last = texts.last().cloned().unwrap_or_default();
    (texts.join(" "), last)
}

fn generated(c: &Controls, last: &str) -> String {
    if let Some(t) = &c.content {
        return t.clone();
    }
    if c.echo {
        return last.to_string();
    }
    (0..c.completion_tokens.unwrap_or(8))
        .map(|i| format!("mock{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cached(h: &HeaderMap) -> u64 {
    h.get("x-mock-cached-tokens")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Builds the reply for `path`; `None` leaves it to `replies::openai` (chat, embeddings,
/// non-streamed completions) or to the echo.
pub fn reply(
    method: &Method,
    path: &str,
    h: &HeaderMap,
    body: &[u8],
    c: &Controls,
) -> Option<More> {
    let json_body = || serde_json::from_slice::<Value>(body).ok();
    match (method, path) {
        (&Method::POST, "/v1/responses") => Some(More::Reply(responses(&json_body()?, h, c))),
        (&Method::POST, "/v1/completions") => {
            let req = json_body()?;
            req.get("stream")
                .and_then(Value::as_bool)
                .filter(|s| *s)
                .map(|_| More::Reply(Reply::Sse(completions_stream(&req, c))))
        }
        (&Method::POST, "/v1/images/generations") => Some(More::Reply(images(&json_body()?, c))),
        (&Method::POST, "/v1/audio/transcriptions" | "/v1/audio/translations") => {
            Some(audio_in(path, h, body, c))
        }
        (&Method::POST, "/v1/audio/speech") => {
            let req = json_body()?;
            let input = req.get("input").and_then(Value::as_str).unwrap_or("");
            // Not real MP3: an ID3 header then the input, so a test can see what arrived.
            let mut audio = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
            audio.extend_from_slice(input.as_bytes());
            Some(More::Bytes(200, "audio/mpeg".into(), audio))
        }
        (&Method::POST, "/v1/moderations") => Some(More::Reply(moderations(&json_body()?))),
        (&Method::POST, "/v1/rerank") => Some(More::Reply(rerank(&json_body()?, c))),
        _ if path == "/v1/files" || path.starts_with("/v1/files/") => files(method, path, h, body),
        _ if path == "/v1/batches" || path.starts_with("/v1/batches/") => {
            batches(method, path, body)
        }
        _ => None,
    }
}

fn response_object(model: &str, status: &str, text: Option<&str>, usage: Option<Value>) -> Value {
    let output = match text {
        Some(t) => json!([{
            "type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": []}],
        }]),
        None => json!([]),
    };
    json!({
        "id": "resp_mock", "object": "response", "created_at": CREATED, "status": status,
        "model": model, "output": output, "error": null, "incomplete_details": null,
        "instructions": null, "metadata": {}, "parallel_tool_calls": true, "temperature": 1.0,
        "tool_choice": "auto", "tools": [], "top_p": 1.0, "usage": usage,
    })
}

fn responses(req: &Value, h: &HeaderMap, c: &Controls) -> Reply {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model");
    let (all, last) = responses_prompt(req);
    let text = generated(c, &last);
    let (input, output) = (words(&all), words(&text));
    let usage = (!c.omit_usage).then(|| {
        json!({
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": cached(h).min(input)},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + output,
        })
    });
    if !req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return Reply::Json(200, response_object(model, "completed", Some(&text), usage));
    }
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut push = |kind: &str, mut v: Value| {
        v["type"] = json!(kind);
        v["sequence_number"] = json!(seq);
        seq += 1;
        events.push(format!("event: {kind}\ndata: {v}\n\n").into_bytes());
    };
    let started = response_object(model, "in_progress", None, None);
    push("response.created", json!({"response": started.clone()}));
    push("response.in_progress", json!({"response": started}));
    let item = json!({"type": "message", "id": "msg_mock", "status": "in_progress",
                      "role": "assistant", "content": []});
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": item}),
    );
    let at = json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0});
    let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
    let mut added = at.clone();
    added["part"] = part("");
    push("response.content_part.added", added);
    let ws: Vec<&str> = text.split_whitespace().collect();
    let n = c.chunks.unwrap_or(ws.len() as u64).max(1) as usize;
    for (i, group) in ws.chunks(ws.len().div_ceil(n).max(1)).enumerate() {
        let mut d = at.clone();
        let lead = if i == 0 { "" } else { " " };
        d["delta"] = json!(format!("{lead}{}", group.join(" ")));
        push("response.output_text.delta", d);
    }
    let mut done = at.clone();
    done["text"] = json!(text);
    push("response.output_text.done", done);
    let mut part_done = at;
    part_done["part"] = part(&text);
    push("response.content_part.done", part_done);
    let finished = response_object(model, "completed", Some(&text), usage);
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": finished["output"][0].clone()}),
    );
    push("response.completed", json!({"response": finished}));
    Reply::Sse(events)
}

fn completions_stream(req: &Value, c: &Controls) -> Vec<Vec<u8>> {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model");
    let prompt: Vec<String> = match req.get("prompt") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    };
    let text = generated(c, prompt.last().map_or("", String::as_str));
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && !c.omit_usage;
    let chunk = |t: &str, finish: Value| {
        let v = json!({"id": "cmpl-mock", "object": "text_completion", "created": CREATED,
            "model": model, "choices": [{"index": 0, "text": t, "finish_reason": finish, "logprobs": null}]});
        format!("data: {v}\n\n").into_bytes()
    };
    let mut events: Vec<Vec<u8>> = text
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            chunk(
                &if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                },
                Value::Null,
            )
        })
        .collect();
    events.push(chunk("", json!("stop")));
    if include_usage {
        let (p, o) = (words(&prompt.join(" ")), words(&text));
        let v = json!({"id": "cmpl-mock", "object": "text_completion", "created": CREATED,
            "model": model, "choices": [],
            "usage": {"prompt_tokens": p, "completion_tokens": o, "total_tokens": p + o}});
        events.push(format!("data: {v}\n\n").into_bytes());
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

fn images(req: &Value, c: &Controls) -> Reply {
    let n = req
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 10);
    let prompt = req.get("prompt").and_then(Value::as_str).unwrap_or("");
    let b64 = req.get("response_format").and_then(Value::as_str) == Some("b64_json");
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if b64 {
                json!({"b64_json": "iVBORw0KGgo=", "revised_prompt": prompt})
            } else {
                json!({"url": format!("https://images.mock/img{i}.png"), "revised_prompt": prompt})
            }
        })
        .collect();
    let mut body = json!({"created": CREATED, "data": data});
    if !c.omit_usage {
        // gpt-image-1's usage: text tokens in, one fixed block of image tokens out per image.
        let (input, output) = (words(prompt), 100 * n);
        body["usage"] = json!({"input_tokens": input, "output_tokens": output,
            "total_tokens": input + output,
            "input_tokens_details": {"text_tokens": input, "image_tokens": 0}});
    }
    Reply::Json(200, body)
}

/// One form field: name, filename (file parts), bytes.
pub type Field = (String, Option<String>, Vec<u8>);

/// Fields of a `multipart/form-data` body, in order.
pub fn form_fields(h: &HeaderMap, body: &[u8]) -> Option<Vec<Field>> {
    let ct = h.get("content-type")?.to_str().ok()?;
    let boundary = ct
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    let delim = format!("--{boundary}").into_bytes();
    let mut out = Vec::new();
    let mut rest = body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(rest, &delim)?;
    rest = &rest[start + delim.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(out);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        rest = &rest[head_end + 4..];
        let mut end_delim = b"\r\n".to_vec();
        end_delim.extend_from_slice(&delim);
        let end = find(rest, &end_delim)?;
        let value = rest[..end].to_vec();
        rest = &rest[end + end_delim.len()..];
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
        let param = |k: &str| {
            disposition.split(';').map(str::trim).find_map(|p| {
                p.strip_prefix(k)
                    .and_then(|v| v.strip_prefix('='))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        out.push((param("name")?, param("filename"), value));
    }
}

fn audio_in(path: &str, h: &HeaderMap, body: &[u8], c: &Controls) -> More {
    let Some(fields) = form_fields(h, body) else {
        return More::Reply(Reply::Json(400, crate::replies::error(400)));
    };
    let field = |n: &str| {
        fields
            .iter()
            .find(|f| f.0 == n)
            .map(|f| String::from_utf8_lossy(&f.2).to_string())
    };
    let Some(audio) = fields.iter().find(|f| f.0 == "file") else {
        return More::Reply(Reply::Json(400, crate::replies::error(400)));
    };
    let text = c.content.clone().unwrap_or_else(|| {
        let n = c.completion_tokens.unwrap_or(5);
        (0..n)
            .map(|i| format!("heard{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    if field("response_format").as_deref() == Some("text") {
        return More::Bytes(200, "text/plain".into(), format!("{text}\n").into_bytes());
    }
    let mut v = json!({"text": text});
    if path.ends_with("/transcriptions") && !c.omit_usage {
        // gpt-4o-transcribe's token usage: the audio (a token per 100 bytes here) and the
        // prompt in, the transcript out.
        let audio_tokens = (audio.2.len() as u64).div_ceil(100);
        let text_tokens = words(&field("prompt").unwrap_or_default());
        let (input, output) = (audio_tokens + text_tokens, words(&text));
        v["usage"] = json!({"type": "tokens", "input_tokens": input, "output_tokens": output,
            "total_tokens": input + output,
            "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": text_tokens}});
    }
    More::Reply(Reply::Json(200, v))
}

fn moderations(req: &Value) -> Reply {
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
            .collect(),
        _ => Vec::new(),
    };
    let results: Vec<Value> = inputs
        .iter()
        .map(|s| {
            let flagged = s.contains("violence");
            json!({"flagged": flagged,
                "categories": {"violence": flagged, "hate": false, "harassment": false},
                "category_scores": {"violence": if flagged { 0.9 } else { 0.01 }, "hate": 0.0, "harassment": 0.0}})
        })
        .collect();
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("omni-moderation-latest");
    Reply::Json(
        200,
        json!({"id": "modr-mock", "model": model, "results": results}),
    )
}

fn rerank(req: &Value, c: &Controls) -> Reply {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-rerank");
    let query = req.get("query").and_then(Value::as_str).unwrap_or("");
    let docs: Vec<String> = req
        .get("documents")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|d| match d {
                    Value::String(s) => s.clone(),
                    v => v
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let q: Vec<&str> = query.split_whitespace().collect();
    let mut scored: Vec<(usize, f64)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let hits = d.split_whitespace().filter(|w| q.contains(w)).count();
            (i, hits as f64 / (1.0 + words(d) as f64))
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top = req
        .get("top_n")
        .and_then(Value::as_u64)
        .map_or(docs.len(), |n| n as usize);
    let results: Vec<Value> = scored
        .iter()
        .take(top)
        .map(|(i, s)| json!({"index": i, "relevance_score": s, "document": {"text": docs[*i]}}))
        .collect();
    let mut body = json!({"id": "rerank-mock", "model": model, "results": results});
    if !c.omit_usage {
        let total = words(query) + docs.iter().map(|d| words(d)).sum::<u64>();
        body["usage"] = json!({"total_tokens": total});
    }
    Reply::Json(200, body)
}

struct Stored {
    object: Value,
    content: Vec<u8>,
}

fn store() -> &'static Mutex<BTreeMap<String, Stored>> {
    static FILES: OnceLock<Mutex<BTreeMap<String, Stored>>> = OnceLock::new();
    FILES.get_or_init(Mutex::default)
}

/// A file this process never stored (another replica's, or a test's made-up id): described
/// as an empty one, as a stateless fake can.
fn unknown_file(id: &str) -> Value {
    json!({"id": id, "object": "file", "bytes": 0, "created_at": CREATED, "filename": "",
        "purpose": "batch", "status": "processed"})
}

/// `/v1/files`: upload (multipart `file` + `purpose`), list, retrieve, content, delete; kept in
/// memory for the life of the process.
fn files(method: &Method, path: &str, h: &HeaderMap, body: &[u8]) -> Option<More> {
    let Ok(mut files) = store().lock() else {
        return None;
    };
    let rest: Vec<&str> = path
        .trim_start_matches("/v1/files")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let ok = |v: Value| Some(More::Reply(Reply::Json(200, v)));
    match (method, rest.as_slice()) {
        (&Method::POST, []) => {
            let fields = form_fields(h, body)?;
            let file = fields.iter().find(|f| f.0 == "file")?;
            let purpose = fields
                .iter()
                .find(|f| f.0 == "purpose")
                .map(|f| String::from_utf8_lossy(&f.2).to_string())
                .unwrap_or_default();
            let id = format!("file-mock{}", files.len() + 1);
            let object = json!({"id": id, "object": "file", "bytes": file.2.len(),
                "created_at": CREATED, "filename": file.1.clone().unwrap_or_default(),
                "purpose": purpose, "status": "processed"});
            files.insert(
                id,
                Stored {
                    object: object.clone(),
                    content: file.2.clone(),
                },
            );
            ok(object)
        }
        (&Method::GET, []) => {
            let data: Vec<Value> = files.values().map(|f| f.object.clone()).collect();
            ok(json!({"object": "list", "data": data, "has_more": false}))
        }
        (&Method::GET, [id]) => ok(files
            .get(*id)
            .map_or_else(|| unknown_file(id), |f| f.object.clone())),
        (&Method::GET, [id, "content"]) => Some(More::Bytes(
            200,
            "application/octet-stream".into(),
            files
                .get(*id)
                .map(|f| f.content.clone())
                .unwrap_or_default(),
        )),
        (&Method::DELETE, [id]) => {
            files.remove(*id);
            ok(json!({"id": id, "object": "file", "deleted": true}))
        }
        _ => None,
    }
}

fn batch(id: &str, req: &Value, status: &str) -> Value {
    json!({"id": id, "object": "batch", "endpoint": req.get("endpoint").cloned().unwrap_or(Value::Null),
        "input_file_id": req.get("input_file_id").cloned().unwrap_or(Value::Null),
        "completion_window": req.get("completion_window").cloned().unwrap_or(json!("24h")),
        "status": status, "created_at": CREATED, "errors": null, "output_file_id": null,
        "error_file_id": null, "metadata": req.get("metadata").cloned().unwrap_or(Value::Null),
        "request_counts": {"total": 0, "completed": 0, "failed": 0}})
}

/// `/v1/batches`: create, list, retrieve, cancel (an id never created is described as in
/// progress).
fn batches(method: &Method, path: &str, body: &[u8]) -> Option<More> {
    static BATCHES: OnceLock<Mutex<BTreeMap<String, Value>>> = OnceLock::new();
    let mut all = BATCHES.get_or_init(Mutex::default).lock().ok()?;
    let rest: Vec<&str> = path
        .trim_start_matches("/v1/batches")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let ok = |v: Value| Some(More::Reply(Reply::Json(200, v)));
    match (method, rest.as_slice()) {
        (&Method::POST, []) => {
            let req: Value = serde_json::from_slice(body).ok()?;
            let id = format!("batch_mock{}", all.len() + 1);
            let b = batch(&id, &req, "validating");
            all.insert(id, b.clone());
            ok(b)
        }
        (&Method::GET, []) => {
            let data: Vec<Value> = all.values().cloned().collect();
            ok(json!({"object": "list", "data": data, "has_more": false}))
        }
        (&Method::GET, [id]) => ok(all
            .get(*id)
            .cloned()
            .unwrap_or_else(|| batch(id, &json!({}), "in_progress"))),
        (&Method::POST, [id, "cancel"]) => {
            let b = all
                .entry(id.to_string())
                .or_insert_with(|| batch(id, &json!({}), "in_progress"));
            b["status"] = json!("cancelling");
            ok(b.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse_events(r: Reply) -> Vec<Value> {
        let Reply::Sse(events) = r else {
            panic!("expected sse")
        };
        events
            .iter()
            .map(|e| {
                let s = String::from_utf8(e.clone()).unwrap();
                let data = s.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                serde_json::from_str(data).unwrap()
            })
            .collect()
    }

    #[test]
    fn responses_stream_ends_with_usage_in_completed() {
        let req = json!({"model": "m", "stream": true, "instructions": "be brief",
            "input": [{"role": "user", "content": "one two"},
                      {"type": "function_call_output", "call_id": "c", "output": "three"}]});
        let events = sse_events(responses(&req, &HeaderMap::new(), &Controls::default()));
        assert_eq!(events[0]["type"], "response.created");
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.completed");
        assert_eq!(last["response"]["usage"]["input_tokens"], 5);
        assert_eq!(last["response"]["usage"]["output_tokens"], 8);
        let text: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(text, last["response"]["output"][0]["content"][0]["text"]);
    }

    #[test]
    fn parses_multipart_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n\x00\x01\r\n--XyZ--\r\n";
        let f = form_fields(&h, body).unwrap();
        assert_eq!(f[0].0, "model");
        assert_eq!(f[0].2, b"whisper-1");
        assert_eq!(f[1].1.as_deref(), Some("a.wav"));
        assert_eq!(f[1].2, b"RIFF\r\n\x00\x01");
    }
}
