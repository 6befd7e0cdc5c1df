//! Our HTTP/1.1 front: the listener, connections served request after request (heads read by
//! the codec's head reader within `HeadLimits`), body framing and TLS. It knows nothing of PushProx: a [`Service`] answers the requests.
//!
//! What it promises against any peer: a head is at most `HeadLimits` (16 KiB and 100 fields
//! by default) and must arrive within the read time-out; framing that could be read two ways
//! is refused; a body is never held whole unless its reader asks within a limit; a connection
//! costs a thread only while a request on it is being read or answered.

mod connection;
mod listener;
mod shared;
mod shares;
mod tls;

pub use connection::{After, BodyError, Connection, Request, RequestBody, Service};
// Heads are read by the codec's one head reader, as pushes and poll answers are.
pub use listener::Front;
pub use pushprox_protocol::{HeadLimits, RequestHead, Version};
pub use shared::Limits;
pub use shares::{Held, ShareLimits, ShareRefusal, Shares};
pub use tls::TlsSetup;
