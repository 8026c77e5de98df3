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
//! over ([`client`]: it reclaims its leases from the new host; a host that
//! closes cleanly leaves its in-memory messages in the [`handover`] file;
//! [`exclusive`] tells an exclusive holder from a host not serving yet;
//! docs/multi-process.md). The engine knows nothing of this: the host is kept
//! alive by its engine as an opaque companion, and hands over from the
//! engine's close hook.

pub(crate) mod client;
pub(crate) mod exclusive;
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod handover;
pub(crate) mod host;
mod limits;
mod notify;
mod probe;
pub mod wire;

pub use host::{ClientInfo, HostInfo};
pub use limits::HostLimits;
