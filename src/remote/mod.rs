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

// `cbindgen:ignore`: nothing here is C ABI (include/libqueue.h is made from src/ffi/).
/// cbindgen:ignore
pub(crate) mod client;
/// cbindgen:ignore
pub(crate) mod exclusive;
/// cbindgen:ignore
#[doc(hidden)]
pub mod fuzz;
/// cbindgen:ignore
pub(crate) mod handover;
/// cbindgen:ignore
pub(crate) mod host;
/// cbindgen:ignore
mod limits;
/// cbindgen:ignore
mod notify;
/// cbindgen:ignore
mod probe;
/// cbindgen:ignore
pub mod wire;

pub use host::{ClientInfo, HostInfo};
pub use limits::HostLimits;
