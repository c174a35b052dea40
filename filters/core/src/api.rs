//! The API surface as one table: what each endpoint's body is, whether it names a model, where
//! its usage is, whether it streams and takes `stream_options`. Auth, PII and token accounting
//! (and the traces' operation name) decide from here instead of each matching paths its own way.

/// What a `POST` body of the endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object.
    Json,
    /// `multipart/form-data` (audio uploads): fields are read as form fields, never as JSON.
    Multipart,
    /// Whatever the API takes (a file upload, a batch description): not read by the gateway.
    Opaque,
}

/// Whether the body names a `model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Always: a body without one is refused (`missing_model`).
    Required,
    /// The API has a default (moderations): still refused without one, since an allow-list
    /// cannot judge a model the request does not name.
    Optional,
    /// Never (files, batches): the key's `endpoints` grants decide.
    Absent,
}

/// One endpoint of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Path without query or trailing slash.
    pub path: &'static str,
    /// The entry also covers every path below `path` (`/v1/files/{id}/content`).
    pub subtree: bool,
    /// `gen_ai.operation.name` (the OpenTelemetry GenAI names where one exists).
    pub operation: &'static str,
    /// What a `POST` body is.
    pub format: Format,
    /// Whether the body names a model.
    pub model: Model,
    /// The provider reports token usage (in the body, or in the stream's last event).
    pub usage: bool,
    /// `stream: true` gives an SSE reply.
    pub streams: bool,
    /// The API takes `stream_options.include_usage` (only chat and legacy completions do: any
    /// other API refuses the unknown field, or ignores it and reports usage its own way).
    pub stream_options: bool,
}

const fn ep(
    path: &'static str,
    operation: &'static str,
    format: Format,
    model: Model,
    usage: bool,
    streams: bool,
) -> Endpoint {
    Endpoint {
        path,
        subtree: false,
        operation,
        format,
        model,
        usage,
        streams,
        stream_options: false,
    }
}

use Format::{Json, Multipart, Opaque};
use Model::{Absent, Optional, Required};

/// Every endpoint the gateway knows, a longer path before its prefix (the traces' CEL
/// expression tests them in order with `startsWith`). A `/v1/` path not here is read as a JSON body naming a
/// model (the OpenAI convention), with no usage expected.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        stream_options: true,
        ..ep("/v1/chat/completions", "chat", Json, Required, true, true)
    },
    Endpoint {
        stream_options: true,
        ..ep(
            "/v1/completions",
            "text_completion",
            Json,
            Required,
            true,
            true,
        )
    },
    ep("/v1/responses", "chat", Json, Required, true, true),
    ep(
        "/v1/messages/count_tokens",
        "count_tokens",
        Json,
        Required,
        false,
        false,
    ),
    ep("/v1/messages", "chat", Json, Required, true, true),
    ep("/v1/embeddings", "embeddings", Json, Required, true, false),
    ep(
        "/v1/images/generations",
        "image_generation",
        Json,
        Required,
        true,
        false,
    ),
    ep("/v1/audio/speech", "speech", Json, Required, false, false),
    ep(
        "/v1/audio/transcriptions",
        "transcription",
        Multipart,
        Required,
        true,
        false,
    ),
    ep(
        "/v1/audio/translations",
        "translation",
        Multipart,
        Required,
        false,
        false,
    ),
    ep(
        "/v1/moderations",
        "moderation",
        Json,
        Optional,
        false,
        false,
    ),
    ep("/v1/rerank", "rerank", Json, Required, true, false),
    Endpoint {
        subtree: true,
        ..ep("/v1/files", "files", Opaque, Absent, false, false)
    },
    Endpoint {
        subtree: true,
        ..ep("/v1/batches", "batches", Opaque, Absent, false, false)
    },
];

/// The entry for `path` (query ignored, trailing slashes ignored); `None` for a path not in the
/// table.
pub fn lookup(path: &str) -> Option<&'static Endpoint> {
    let plain = path.split(['?', '#']).next().unwrap_or("");
    let plain = plain.trim_end_matches('/');
    ENDPOINTS.iter().find(|e| {
        plain == e.path
            || (e.subtree
                && plain
                    .strip_prefix(e.path)
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

/// `gen_ai.operation.name` of a path; `unknown` for one not in the table.
pub fn operation(path: &str) -> &'static str {
    lookup(path).map_or("unknown", |e| e.operation)
}

/// Whether a streamed request to `path` may be given `stream_options.include_usage`.
pub fn takes_stream_options(path: &str) -> bool {
    lookup(path).is_some_and(|e| e.stream_options)
}

/// The body format of a `POST` to `path`: JSON unless the table says otherwise.
pub fn format(path: &str) -> Format {
    lookup(path).map_or(Json, |e| e.format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_paths_with_queries_and_slashes() {
        assert_eq!(
            lookup("/v1/chat/completions?x=1").unwrap().operation,
            "chat"
        );
        assert_eq!(lookup("/v1/embeddings/").unwrap().operation, "embeddings");
        assert_eq!(
            lookup("/v1/files/file-1/content").unwrap().operation,
            "files"
        );
        assert_eq!(lookup("/v1/batches/b/cancel").unwrap().model, Model::Absent);
        assert!(lookup("/v1/filesystem").is_none());
        assert!(lookup("/v1/chat/completions/x").is_none());
        assert_eq!(operation("/v1/messages/count_tokens"), "count_tokens");
        assert_eq!(operation("/v1/fine_tuning/jobs"), "unknown");
    }

    #[test]
    fn only_chat_and_completions_take_stream_options() {
        let taking: Vec<&str> = ENDPOINTS
            .iter()
            .filter(|e| e.stream_options)
            .map(|e| e.path)
            .collect();
        assert_eq!(taking, ["/v1/chat/completions", "/v1/completions"]);
        assert!(!takes_stream_options("/v1/responses"));
        assert!(!takes_stream_options("/v1/messages"));
        assert!(takes_stream_options("/v1/completions?stream=1"));
    }

    #[test]
    fn audio_uploads_are_multipart() {
        assert_eq!(format("/v1/audio/transcriptions"), Format::Multipart);
        assert_eq!(format("/v1/audio/translations"), Format::Multipart);
        assert_eq!(format("/v1/audio/speech"), Format::Json);
        assert_eq!(format("/v1/files"), Format::Opaque);
        assert_eq!(format("/v1/anything"), Format::Json);
    }
}
