//! What a host allows its clients before it drops them: the timeouts, the
//! number of connections and of calls waiting per connection (documented in
//! `docs/wire.md`). Their defaults are the constants of [`super::host`]; tests
//! shorten them through the hidden `BrokerOptions::host_limits`.

use std::time::Duration;

/// A host's limits on its clients. Not part of the stable API: the defaults
/// are what every host uses; tests shorten the timeouts.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLimits {
    /// A connection that has not sent a whole `HELLO` within this is dropped.
    pub hello_timeout: Duration,
    /// A connection that stops sending in the middle of a frame, or does not
    /// read its answers, for this long is dropped.
    pub stall_timeout: Duration,
    /// Connections served at once; more are refused (and counted as dropped).
    pub max_connections: usize,
    /// Calls of one connection waiting at once (blocking receives, sends into
    /// a full queue, publishes): each holds a waiter thread of the host, so a
    /// connection that asks for more is dropped.
    pub max_waits: usize,
    /// Test seam: the uid every peer is taken to have, instead of the one
    /// `SO_PEERCRED` reports (so the refusal is testable without a second
    /// user).
    pub peer_uid: Option<u32>,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            hello_timeout: super::host::HELLO_TIMEOUT,
            stall_timeout: super::host::STALL_TIMEOUT,
            max_connections: super::host::MAX_CONNECTIONS,
            max_waits: super::host::MAX_WAITS,
            peer_uid: None,
        }
    }
}

impl HostLimits {
    /// How often a connection's reader wakes to check its timeouts and
    /// whether the host stops: often enough for the shortest limit.
    pub(crate) fn tick(&self) -> Duration {
        (self.hello_timeout.min(self.stall_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(500))
    }
}
