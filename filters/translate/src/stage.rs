//! One attempt: decide from the path and the endpoint's cluster, then rewrite the request
//! whole and the response whole (JSON) or event by event (SSE).

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use aimesh_config::translate::TranslateConfig;
use aimesh_core::translate::errors::translate_error;
use aimesh_core::translate::stream::{AnthropicToOpenai, OpenaiToAnthropic};
use aimesh_core::translate::{
    dialect_of_path, request, response, rewrite_path, Dialect, Exchange, TranslateError,
};
use aimesh_core::ApiError;
use aimesh_host::{replace_request_body, send_json, Action, Body, Host, Stage};

/// Endpoint metadata naming the cluster of the attempt's endpoint (written by aimesh-xds on
/// every provider endpoint).
pub const HOST_CLUSTER: [&str; 5] = [
    "xds",
    "upstream_host_metadata",
    "filter_metadata",
    "aimesh",
    "cluster",
];

/// Anthropic requires the header; a client of the OpenAI dialect never sends it.
const ANTHROPIC_VERSION: &str = "2023-06-01";

enum Reply {
    /// Not translated (yet): headers not seen, or nothing to do.
    Pass,
    /// A JSON body, translated once it is complete.
    Whole,
    /// A provider error, rendered in the client's dialect once complete.
    Error(u16),
    /// SSE, translated event by event.
    Stream(Box<Streamer>),
}

enum Streamer {
    ToOpenai(AnthropicToOpenai),
    ToAnthropic(OpenaiToAnthropic),
}

impl Streamer {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self {
            Self::ToOpenai(t) => t.feed(chunk),
            Self::ToAnthropic(t) => t.feed(chunk),
        }
    }
    fn finish(&mut self) -> Vec<u8> {
        match self {
            Self::ToOpenai(t) => t.finish(),
            Self::ToAnthropic(t) => t.finish(),
        }
    }
}

pub struct Translate {
    cfg: Rc<TranslateConfig>,
    /// (client dialect, provider dialect) when they differ.
    pair: Option<(Dialect, Dialect)>,
    ex: Exchange,
    reply: Reply,
}

fn count(host: &dyn Host, name: &str) {
    host.metrics().count(name, 1);
}

impl Translate {
    pub fn new(cfg: Rc<TranslateConfig>) -> Self {
        Self {
            cfg,
            pair: None,
            ex: Exchange::default(),
            reply: Reply::Pass,
        }
    }

    /// Refuses the request in the client's dialect (the path is already the provider's, so
    /// the dialect is given, not inferred).
    fn refuse(&self, host: &mut dyn Host, client: Dialect, err: &TranslateError) {
        count(host, "aimesh.translate.request_errors");
        let api = ApiError::in_dialect(err, client);
        send_json(host, api.status, &[], api.body.as_bytes());
    }
}

impl Stage for Translate {
    fn request_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        let hs = host.request_headers();
        let path = hs.get(":path").unwrap_or_default().to_string();
        let Some(client) = dialect_of_path(&path) else {
            return Action::Continue;
        };
        let cluster = host
            .property(&HOST_CLUSTER)
            .and_then(|b| String::from_utf8(b).ok());
        let Some(&provider) = cluster.as_deref().and_then(|c| self.cfg.clusters.get(c)) else {
            return Action::Continue;
        };
        if provider == client {
            return Action::Continue;
        }
        self.pair = Some((client, provider));
        host.set_request_header(":path", Some(&rewrite_path(&path, provider)));
        // A compressed reply could not be read, so none is asked for.
        host.set_request_header("accept-encoding", None);
        match provider {
            Dialect::Anthropic => {
                if hs.get("anthropic-version").is_none() {
                    host.set_request_header("anthropic-version", Some(ANTHROPIC_VERSION));
                }
            }
            Dialect::OpenAi => {
                host.set_request_header("anthropic-version", None);
                host.set_request_header("anthropic-beta", None);
            }
        }
        count(host, "aimesh.translate.requests");
        if eos {
            let err = TranslateError::NotJson;
            self.refuse(host, client, &err);
            return Action::Pause;
        }
        // Held until the body is in: it is translated whole, and content-length follows it.
        Action::Pause
    }

    fn request_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        let Some((client, _)) = self.pair else {
            return Action::Continue;
        };
        if !eos {
            return Action::Pause;
        }
        let body = host.body(Body::Request, size).unwrap_or_default();
        let created = host
            .now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let out = match client {
            Dialect::OpenAi => {
                self.ex = request::openai_exchange(&body, created);
                request::openai_to_anthropic(&body, self.cfg.default_max_tokens)
            }
            Dialect::Anthropic => {
                self.ex = request::anthropic_exchange(&body, created);
                request::anthropic_to_openai(&body)
            }
        };
        match out {
            Ok(new) => {
                replace_request_body(host, size, &new);
                Action::Continue
            }
            Err(e) => {
                self.refuse(host, client, &e);
                Action::Pause
            }
        }
    }

    fn response_headers(&mut self, host: &mut dyn Host, _eos: bool) -> Action {
        let Some((client, _)) = self.pair else {
            return Action::Continue;
        };
        let hs = host.response_headers();
        let status: u16 = hs.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let sse = hs
            .get("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        host.set_response_header("content-length", None);
        self.reply = if !(200..300).contains(&status) {
            host.set_response_header("content-type", Some("application/json"));
            Reply::Error(status)
        } else if sse {
            count(host, "aimesh.translate.streams");
            Reply::Stream(Box::new(match client {
                Dialect::OpenAi => Streamer::ToOpenai(AnthropicToOpenai::new(
                    self.ex.clone(),
                    self.cfg.max_event_bytes,
                )),
                Dialect::Anthropic => Streamer::ToAnthropic(OpenaiToAnthropic::new(
                    self.ex.clone(),
                    self.cfg.max_event_bytes,
                )),
            }))
        } else {
            host.set_response_header("content-type", Some("application/json"));
            Reply::Whole
        };
        Action::Continue
    }

    fn response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        let Some((client, _)) = self.pair else {
            return Action::Continue;
        };
        match &mut self.reply {
            Reply::Pass => Action::Continue,
            Reply::Stream(s) => {
                let chunk = host.body(Body::Response, size).unwrap_or_default();
                let mut out = s.feed(&chunk);
                if eos {
                    out.extend(s.finish());
                }
                host.replace_body(Body::Response, size, &out);
                Action::Continue
            }
            Reply::Whole | Reply::Error(_) if !eos => Action::Pause,
            Reply::Error(status) => {
                let status = *status;
                let body = host.body(Body::Response, size).unwrap_or_default();
                host.replace_body(
                    Body::Response,
                    size,
                    &translate_error(status, &body, client),
                );
                count(host, "aimesh.translate.provider_errors");
                Action::Continue
            }
            Reply::Whole => {
                let body = host.body(Body::Response, size).unwrap_or_default();
                let out = match client {
                    Dialect::OpenAi => response::anthropic_to_openai(&body, &self.ex),
                    Dialect::Anthropic => response::openai_to_anthropic(&body, &self.ex),
                };
                match out {
                    Ok(new) => host.replace_body(Body::Response, size, &new),
                    // A 2xx that is not JSON: passed on as it came, and counted.
                    Err(_) => count(host, "aimesh.translate.response_errors"),
                }
                Action::Continue
            }
        }
    }
}
