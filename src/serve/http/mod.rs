//! HTTP/1.1 for the files of [`super::files`].
//! - [`request`]: request heads and byte ranges (no sockets, unit-tested).
//! - [`server`]: the listener and one thread per connection, bounded.

pub mod request;
pub mod server;
