//! The answer's side: JSON answers are copied (never held) to read their `usage` at the end;
//! event streams pass event by event through a `StreamMeter`, which strips the usage chunk
//! Warden asked for and cuts the stream with an error event when the output crosses the budget.

use super::config::Encoding;
use super::plan::Usage;
use super::usage::{self, Ending, Reported, StreamMeter};
use super::vm::BudgetVm;
use super::{metrics, reply};
use crate::encoding;
use crate::host::{response_header, Host, HostError};
use crate::model_api::Api;

/// The largest single event a stream may carry.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

enum Framing {
    /// No answer yet (or not one this filter reads).
    Unknown,
    /// An encoded answer, which cannot be metered: withheld, replaced by `error` (sent with
    /// the first chunk, so it never depends on how the answer ends).
    Encoded {
        error: Option<Vec<u8>>,
    },
    Json {
        copy: Vec<u8>,
        overflow: bool,
    },
    Stream(StreamMeter),
}

pub struct Meter {
    api: Api,
    request_id: String,
    encoding: Encoding,
    strip_usage_chunk: bool,
    allowance: Option<u64>,
    /// A 2xx answer: only those are billed.
    ok: bool,
    /// The answer's status, whether the provider (not Envoy) sent it, and whether (when Envoy
    /// answered) the request never reached the provider.
    status: Option<u16>,
    from_upstream: bool,
    never_sent: bool,
    framing: Framing,
    reported: Reported,
}

impl Meter {
    pub fn new(
        api: Api,
        request_id: &str,
        encoding: Encoding,
        strip_usage_chunk: bool,
        allowance: Option<u64>,
    ) -> Meter {
        Meter {
            api,
            request_id: request_id.to_string(),
            encoding,
            strip_usage_chunk,
            allowance,
            ok: false,
            status: None,
            from_upstream: false,
            never_sent: false,
            framing: Framing::Unknown,
            reported: Reported::default(),
        }
    }

    pub fn on_headers(&mut self, host: &dyn Host) -> Result<(), HostError> {
        let status = response_header(host, ":status")?.and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        self.status = Some(status);
        self.ok = (200..300).contains(&status);
        if !self.ok {
            // Envoy marks what came from the upstream; its own replies (timeouts, resets) say why
            // they were made instead.
            let details = host.property(&["response", "code_details"])?.unwrap_or_default();
            let details = String::from_utf8_lossy(&details);
            self.from_upstream = details == "via_upstream";
            self.never_sent = usage::never_sent(&details);
            return Ok(());
        }
        let encodings = host.response_header_values("content-encoding")?;
        if let Some(encoding) = encoding::non_identity(encodings.iter().map(String::as_str)) {
            // Warden asked for `identity`; usage in a body it cannot read is usage it cannot
            // meter. The answer fails closed in the API's shape, and the reservation is kept.
            let message = format!(
                "the provider's answer is encoded (Content-Encoding: {encoding}) and cannot be metered, so it was withheld"
            );
            let reply = reply::error(
                Some(self.api),
                502,
                &message,
                "server_error",
                "answer_unreadable",
                "protocol",
                &self.request_id,
            );
            host.set_response_header(":status", Some("502"))?;
            host.set_response_header("content-type", Some("application/json"))?;
            host.set_response_header("content-encoding", None)?;
            host.set_response_header("content-length", None)?;
            let _ = host.increment(metrics::ANSWERS_WITHHELD, 1);
            self.framing = Framing::Encoded { error: Some(reply.body.into_bytes()) };
            return Ok(());
        }
        let content_type = response_header(host, "content-type")?.unwrap_or_default().to_ascii_lowercase();
        self.framing = if content_type.starts_with("text/event-stream") {
            // Events may be removed or added: the length changes.
            host.set_response_header("content-length", None)?;
            Framing::Stream(StreamMeter::new(
                self.api,
                self.encoding,
                self.strip_usage_chunk,
                self.allowance,
                MAX_EVENT_BYTES,
            ))
        } else {
            Framing::Json { copy: Vec::new(), overflow: false }
        };
        Ok(())
    }

    pub fn on_body(
        &mut self,
        host: &dyn Host,
        vm: &BudgetVm,
        size: usize,
        end: bool,
        cut_message: &dyn Fn() -> String,
    ) -> Result<(), HostError> {
        match &mut self.framing {
            Framing::Unknown => {}
            Framing::Encoded { error } => host.set_response_body(size, &error.take().unwrap_or_default())?,
            Framing::Json { copy, overflow } => {
                if !*overflow {
                    if copy.len() + size > vm.policy.max_response_bytes {
                        *overflow = true;
                        *copy = Vec::new();
                    } else {
                        copy.extend_from_slice(&host.response_body(size)?);
                    }
                }
                if end && !*overflow {
                    self.reported = usage::from_json(self.api, copy).0;
                }
            }
            Framing::Stream(stream) => {
                let chunk = host.response_body(size)?;
                let was_cut = stream.cut;
                let mut out = stream.push(&chunk, &vm.tokenizers, cut_message);
                if end {
                    out.extend_from_slice(&stream.finish(&vm.tokenizers, cut_message));
                }
                count_cut(host, stream, was_cut);
                if out != chunk {
                    host.set_response_body(size, &out)?;
                }
                self.reported = stream.reported;
            }
        }
        Ok(())
    }

    /// The answer ended in trailers: read to its end like one that ended with its last DATA
    /// frame. A stream's unterminated last event is still metered, but can no longer be added
    /// to the body, so it is withheld.
    pub fn on_trailers(&mut self, host: &dyn Host, vm: &BudgetVm, cut_message: &dyn Fn() -> String) {
        match &mut self.framing {
            Framing::Unknown | Framing::Encoded { .. } => {}
            Framing::Json { copy, overflow } => {
                if !*overflow {
                    self.reported = usage::from_json(self.api, copy).0;
                }
            }
            Framing::Stream(stream) => {
                let was_cut = stream.cut;
                let _withheld = stream.finish(&vm.tokenizers, cut_message);
                count_cut(host, stream, was_cut);
                self.reported = stream.reported;
            }
        }
    }

    /// Whether the answer is a failure reply whose request never left the gateway (the router
    /// refused it before any attempt).
    pub fn failed(&self) -> bool {
        self.status.is_some() && !self.ok
    }

    /// The request never reached a provider, though Envoy's details do not say so (a reply the
    /// router made before any attempt): nothing was generated.
    pub fn mark_never_sent(&mut self) {
        self.never_sent = true;
        self.from_upstream = false;
    }

    /// What the answer used, as far as it got: the provider's report, completed with the
    /// prompt estimate and the counted (or, for JSON, reserved) output.
    /// How the answer ended, `finished` when its last byte (or its trailers) came.
    pub fn ending(&self, finished: bool) -> Ending {
        let oversized = matches!(&self.framing, Framing::Stream(stream) if stream.oversized);
        match self.status {
            Some(_) if !self.ok && self.from_upstream => Ending::ProviderError,
            Some(_) if !self.ok && self.never_sent => Ending::NotSent,
            // A stream cut because an event could not be read went on at the provider.
            Some(_) if self.ok && finished && !oversized => Ending::Complete,
            _ => Ending::CutShort,
        }
    }

    /// What the request is charged, `finished` or not (see `usage::charged`).
    pub fn charge(&self, estimate: Usage, finished: bool) -> Usage {
        usage::charged(self.ending(finished), self.usage(estimate), estimate)
    }

    fn usage(&self, estimate: Usage) -> Usage {
        if !self.ok {
            return Usage::default();
        }
        match &self.framing {
            Framing::Unknown => Usage::default(),
            // The provider answered and billed; what it billed could not be read.
            Framing::Encoded { .. } => estimate,
            Framing::Json { .. } => usage::settled(self.reported, estimate.input, estimate.output),
            Framing::Stream(stream) => usage::settled(self.reported, estimate.input, stream.counted_output),
        }
    }
}

fn count_cut(host: &dyn Host, stream: &StreamMeter, was_cut: bool) {
    if stream.cut && !was_cut {
        let _ = host.increment(metrics::STREAM_CUT, 1);
    }
}
