//! The shared vocabulary: plain types that the store, the engine and the API
//! all use. It sits just above `sync` and imports nothing from a higher layer
//! (only `sync`, `error` and `clock`, which are as low).
//!
//! - `message`: [`Message`] (what a producer sends), [`Headers`], the
//!   priority constants and [`MessageView`] (read access to a received one).
//! - `node`: [`Node`], a message as held in memory (shared by the engine and
//!   the storage's records), and node recycling.
//! - `options`: a queue's [`QueueOptions`] and [`QueueStats`]; [`OnFull`] and
//!   [`Wait`], how a send or receive waits.
//! - `quotas`: a namespace's [`Quotas`].
//! - `topic`: which messages a subscription takes ([`Filter`]), a topic's
//!   [`TopicStats`].
//! - `ids`: maps keyed by message id.

mod ids;
pub(crate) mod message;
pub(crate) mod node;
mod options;
mod quotas;
mod topic;

pub(crate) use ids::{IdHasher, IdMap};
pub use message::{Headers, Message, MessageView, DEFAULT_PRIORITY, EXECUTION_ID, MAX_PRIORITY};
pub use node::Node;
pub use options::{OnFull, QueueOptions, QueueStats, Wait};
pub use quotas::{Quotas, DEFAULT_MAX_MESSAGE_SIZE};
pub use topic::{Filter, TopicStats};
