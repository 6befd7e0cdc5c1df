//! The PushProx wire protocol, shared by `pushprox-proxy` and `pushprox-client`.
//!
//! 1. Prometheus sends the proxy a scrape in absolute form: `GET http://fqdn:9100/metrics`.
//! 2. A client long-polls the proxy with `POST /poll`, body = its FQDN.
//! 3. The proxy answers the poll with the scrape request in proxy form ([`ScrapeRequest`]),
//!    adding an `Id` header and the effective `X-Prometheus-Scrape-Timeout-Seconds`.
//! 4. The client performs the scrape against its local target.
//! 5. The client sends `POST /push` whose body is the whole HTTP response, serialized
//!    ([`Response`], [`ResponseHead`]), with the same `Id` header.
//! 6. The proxy strips `Id` and returns status, headers and body to Prometheus.
//!
//! Every HTTP head, request or response, is read by one reader ([`parse_request`],
//! [`read_request`], [`ResponseHead::parse`]); framing (`Content-Length`, chunked,
//! read-to-end) lives in [`body`]. Nothing here opens sockets, starts threads or logs: callers bring the bytes.

mod announce;
pub mod body;
mod error;
mod fqdn;
mod head;
mod headers;
mod request;
mod response;
mod timeout;

pub use announce::{
    check_label_name, json_ascii_string, json_labels, json_targets, Label, LabelNameError,
    FQDN_HEADER, LABELS_HEADER, TARGETS_HEADER,
};
pub use body::{chunk_size_line, read_body, BodyReader, ChunkedEncoder, CHUNK_LINE, LAST_CHUNK};
pub use error::{excerpt, ProtocolError};
pub use fqdn::{fqdn_key, is_fqdn};
pub use head::{
    parse_request, read_request, Framing, HeadLimits, RequestHead, ResponseHead, Version,
};
pub use headers::Headers;
pub use request::{is_absolute_url, without_userinfo, ScrapeRequest, Target, ID_HEADER};
pub use response::{reason_phrase, reason_text, reason_with, Response, HOP_BY_HOP, MAX_REASON};
pub use timeout::{
    format_duration, format_scrape_timeout, parse_duration, parse_scrape_timeout,
    PUSH_TIMEOUT_HEADER, SCRAPE_TIMEOUT_HEADER,
};

/// Ours, on every answer of our proxy to a poll: how many polls of one client instance it
/// keeps open side by side. Go peers ignore it; our client opens extra polls only when it
/// sees it, so it never makes a Go proxy supersede its own polls.
pub const MAX_POLLS_HEADER: &str = "X-PushProx-Max-Polls";

/// Ours, on polls: the client process's instance id. Polls with the same id stand side by
/// side; a poll without one (a Go client's) or with another supersedes them, as in Go.
pub const POLLER_HEADER: &str = "X-PushProx-Poller";

/// Ours, on polls: how long the proxy may hold the poll before answering 408.
pub const HOLD_HEADER: &str = "X-PushProx-Hold";

/// Ours, on answers of our proxy only: "this proxy does not serve that now; ask the next one
/// at once" (value [`RETRY_NEXT`]). Set on a poll answered while the proxy stops, on a scrape
/// for an FQDN that does not poll this proxy (a shard that does not hold it) and on a scrape
/// refused while stopping, all with status 404, which a balancer retries on its next server
/// (nginx `proxy_next_upstream http_404`, HAProxy `retry-on 404`) without counting the proxy
/// as failed. Our client polls again at once on a poll answer carrying it; a response pushed
/// by a client never carries it (the proxy drops it), so a target's own 404 cannot pass for it.
pub const RETRY_HEADER: &str = "X-PushProx-Retry";

/// The value of [`RETRY_HEADER`].
pub const RETRY_NEXT: &str = "next";

/// Default limit for a request or response head, in bytes.
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;
