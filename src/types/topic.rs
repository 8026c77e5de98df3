//! Topics' vocabulary: which messages a subscription takes ([`Filter`]) and a
//! topic's counters ([`TopicStats`]).

use super::message::{Message, EXECUTION_ID};

/// Which messages a subscription takes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Filter {
    /// Every message.
    #[default]
    All,
    /// Messages with this name.
    Name(String),
    /// Messages carrying this header with this value.
    Header {
        /// Header key.
        key: String,
        /// Expected value.
        value: Vec<u8>,
    },
}

impl Filter {
    /// Messages named `name`.
    pub fn name(name: impl Into<String>) -> Self {
        Filter::Name(name.into())
    }

    /// Messages whose header `key` equals `value`.
    pub fn header(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Filter::Header {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Messages of one workflow execution (the `execution_id` envelope header).
    pub fn execution_id(id: impl Into<String>) -> Self {
        Self::header(EXECUTION_ID, id.into())
    }

    /// Whether `m` passes the filter.
    pub fn matches(&self, m: &Message) -> bool {
        match self {
            Filter::All => true,
            Filter::Name(n) => m.name.as_deref() == Some(n.as_str()),
            Filter::Header { key, value } => m.headers.get(key) == Some(value),
        }
    }
}

/// Counters of a topic (since its broker opened; not kept across a restart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Publishes (whatever their outcome).
    pub published: u64,
    /// Publishes that found the topic without any subscription: the message
    /// went nowhere (not an error).
    pub dropped_no_subscriber: u64,
    /// Publishes that found subscriptions, none of whose filters matched.
    pub unmatched: u64,
    /// Subscriptions now.
    pub subscriptions: u64,
}
