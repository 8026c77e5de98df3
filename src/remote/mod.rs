//! Several processes, one data directory: the seam between the public API and
//! a broker hosted by another process.
//!
//! The first process to open a directory is its *host*: it holds the lock,
//! owns the journal and the engine, and serves the others on a Unix socket in
//! the directory ([`host`]). A later process *attaches* ([`client`]): its
//! `Broker`, `Namespace`, `Queue`, `Delivery` and `Topic` handles carry the
//! *remote* flavor, whose calls travel as frames ([`wire`], documented in
//! `docs/wire.md`) and are answered by the host's own local handles — so an
//! attached process gets the same semantics and the same errors, and no
//! feature is written twice. When the host goes, an attached process takes
//! over. The engine knows nothing of this: the host is kept alive by its
//! engine as an opaque companion.

pub(crate) mod client;
pub(crate) mod host;
mod notify;
pub mod wire;

pub use host::{ClientInfo, HostInfo};
