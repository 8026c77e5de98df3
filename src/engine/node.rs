//! The engine's copy of a message, shared (`Arc<Node>`) by the ready lanes, the
//! lease table and the deliveries handed out; immutable but for the delivery count.
//!
//! (Nodes by value in the lanes were tried and measured slower: `SegQueue`
//! builds each 31-slot block on the stack and copies it to the heap, which for a
//! ~120-byte node costs more than the one allocation it saves.)

use crate::message::Headers;
use crate::sync::lane::Keyed;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

/// See the module documentation.
#[derive(Debug)]
pub struct Node {
    pub(crate) id: u64,
    pub(crate) priority: u8,
    pub(crate) persistent: bool,
    pub(crate) body: Box<[u8]>,
    /// `None` when there are none (most messages): nothing to allocate or drop.
    pub(crate) headers: Option<Box<Headers>>,
    pub(crate) name: Option<Box<str>>,
    pub(crate) correlation_id: Option<Box<str>>,
    pub(crate) enqueued_at: u64,
    /// `u64::MAX` when the message never expires.
    pub(crate) expires_at: u64,
    pub(crate) size: u64,
    /// How many times it has been handed to a consumer.
    pub(crate) deliveries: AtomicU32,
}

static NO_HEADERS: Headers = Headers::new();

impl Node {
    #[inline]
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expires_at <= now
    }

    pub(crate) fn headers(&self) -> &Headers {
        self.headers.as_deref().unwrap_or(&NO_HEADERS)
    }
}

impl Keyed for Arc<Node> {
    #[inline]
    fn key(&self) -> u64 {
        self.id
    }
}
