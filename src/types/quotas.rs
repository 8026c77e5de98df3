//! A namespace's limits: [`Quotas`].

/// Limits of one namespace. `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Most queues it may hold.
    pub max_queues: Option<u64>,
    /// Most messages it may hold, over all its queues (ready, delayed and leased).
    pub max_messages: Option<u64>,
    /// Most bytes it may hold (sizes as in [`crate::Message::size`]).
    pub max_bytes: Option<u64>,
    /// Largest single message.
    pub max_message_size: u64,
}

/// Default largest message: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_queues: None,
            max_messages: None,
            max_bytes: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl Quotas {
    /// No limits but the default largest message.
    pub fn unlimited() -> Self {
        Self::default()
    }
    /// Sets the most queues.
    pub fn max_queues(mut self, n: u64) -> Self {
        self.max_queues = Some(n);
        self
    }
    /// Sets the most messages.
    pub fn max_messages(mut self, n: u64) -> Self {
        self.max_messages = Some(n);
        self
    }
    /// Sets the most bytes.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = Some(n);
        self
    }
    /// Sets the largest message.
    pub fn max_message_size(mut self, n: u64) -> Self {
        self.max_message_size = n;
        self
    }
}
