//! Which messages a subscription takes: [`Filter`].

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
