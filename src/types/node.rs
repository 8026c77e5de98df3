//! The engine's copy of a message, shared (`Arc<Node>`) by the ready lanes, the
//! lease table and the deliveries handed out; immutable but for the delivery count.
//!
//! (Nodes by value in the lanes were tried and measured slower: `SegQueue`
//! builds each 31-slot block on the stack and copies it to the heap, which for a
//! ~120-byte node costs more than the one allocation it saves.)

use crate::sync::lane::Keyed;
use crate::types::{Headers, MessageView};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

/// See the module documentation.
///
/// 64 bytes (80 with the `Arc` counts; 112 before headers, name and
/// correlation id moved out): the fields most messages leave unset are one
/// pointer to an `Extra`.
#[derive(Debug)]
pub struct Node {
    pub(crate) id: u64,
    pub(crate) body: Box<[u8]>,
    /// Headers, name and correlation id; `None` when all are unset (most
    /// messages): nothing to allocate or drop.
    pub(crate) extra: Option<Box<Extra>>,
    pub(crate) enqueued_at: u64,
    /// `u64::MAX` when the message never expires.
    pub(crate) expires_at: u64,
    pub(crate) size: u64,
    /// How many times it has been handed to a consumer.
    pub(crate) deliveries: AtomicU32,
    pub(crate) priority: u8,
    pub(crate) persistent: bool,
}

/// The rarely set parts of a message.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub(crate) headers: Headers,
    pub(crate) name: Option<Box<str>>,
    pub(crate) correlation_id: Option<Box<str>>,
}

impl Extra {
    /// `None` when nothing is set.
    pub(crate) fn new(
        headers: Headers,
        name: Option<String>,
        correlation_id: Option<String>,
    ) -> Option<Box<Extra>> {
        if headers.is_empty() && name.is_none() && correlation_id.is_none() {
            return None;
        }
        Some(Box::new(Extra {
            headers,
            name: name.map(String::into_boxed_str),
            correlation_id: correlation_id.map(String::into_boxed_str),
        }))
    }
}

static NO_HEADERS: Headers = Headers::new();

impl Node {
    #[inline]
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expires_at <= now
    }

    pub(crate) fn headers(&self) -> &Headers {
        self.extra.as_ref().map_or(&NO_HEADERS, |e| &e.headers)
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.extra.as_ref()?.name.as_deref()
    }

    pub(crate) fn correlation_id(&self) -> Option<&str> {
        self.extra.as_ref()?.correlation_id.as_deref()
    }
}

impl MessageView for Node {
    #[inline]
    fn id(&self) -> u64 {
        self.id
    }
    #[inline]
    fn body(&self) -> &[u8] {
        &self.body
    }
    #[inline]
    fn headers(&self) -> &Headers {
        Node::headers(self)
    }
    #[inline]
    fn name(&self) -> Option<&str> {
        Node::name(self)
    }
    #[inline]
    fn correlation_id(&self) -> Option<&str> {
        Node::correlation_id(self)
    }
    #[inline]
    fn priority(&self) -> u8 {
        self.priority
    }
    #[inline]
    fn enqueued_at(&self) -> u64 {
        self.enqueued_at
    }
    #[inline]
    fn expires_at(&self) -> Option<u64> {
        (self.expires_at != u64::MAX).then_some(self.expires_at)
    }
    #[inline]
    fn is_persistent(&self) -> bool {
        self.persistent
    }
    #[inline]
    fn size(&self) -> u64 {
        self.size
    }
}

impl Keyed for Arc<Node> {
    #[inline]
    fn key(&self) -> u64 {
        self.id
    }
}

/// Node recycling: a transfer cache between the threads that free nodes
/// (consumers) and the threads that make them (producers).
///
/// Without it every message costs a `malloc` on the producer and a `free` on
/// the consumer; the producer's allocator cache never refills (its blocks are
/// freed elsewhere), so each `malloc` takes the allocator's slow path (perf:
/// ~11 % of an spsc run in `_int_malloc` for the node alone). Here a node whose
/// last reference goes away on the hot path is kept, with its body, headers
/// and names when small, in the freeing thread's cache; full batches move to a
/// bounded global stack that threads making nodes take from. What a node keeps
/// is dropped (freed) by the thread that reuses it — the producer — which
/// refills that thread's allocator cache for its own next allocation; a body
/// is reused in place for a body of the same length copied in ([`make`]'s
/// `copy`).
///
/// Memory held is bounded: at most [`CACHED`] nodes per thread and
/// [`GLOBAL`] batches of [`BATCH`] globally, each keeping at most
/// [`KEEP_BODY`] bytes of message.
pub(crate) mod pool {
    use super::Node;
    use crossbeam_queue::ArrayQueue;
    use std::cell::RefCell;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::{Arc, OnceLock};

    /// Nodes moved between threads at once.
    pub(crate) const BATCH: usize = 32;
    /// Nodes a thread keeps before handing a batch to the global stack.
    pub(crate) const CACHED: usize = 2 * BATCH;
    /// Batches the global stack holds; beyond that, nodes are freed.
    pub(crate) const GLOBAL: usize = 32;
    /// Largest message (body, headers, name, correlation id) whose parts are
    /// kept with a recycled node.
    pub(crate) const KEEP_BODY: usize = 4096;

    fn global() -> &'static ArrayQueue<Vec<Arc<Node>>> {
        static G: OnceLock<ArrayQueue<Vec<Arc<Node>>>> = OnceLock::new();
        G.get_or_init(|| ArrayQueue::new(GLOBAL))
    }

    thread_local! {
        static CACHE: RefCell<Vec<Arc<Node>>> = const { RefCell::new(Vec::new()) };
    }

    /// A recycled node (unique), if this thread or the global stack has one.
    #[inline]
    fn take() -> Option<Arc<Node>> {
        CACHE
            .try_with(|c| {
                let mut c = c.try_borrow_mut().ok()?;
                if c.is_empty() {
                    *c = global().pop()?;
                }
                c.pop()
            })
            .ok()
            .flatten()
    }

    /// Wraps `node` in an `Arc`, reusing a recycled one when there is one. With
    /// `copy`, the body is `copy`'s bytes (`node.body` is then ignored): copied
    /// into the recycled node's body buffer when it has that length, else into a
    /// new one.
    #[inline]
    pub(crate) fn make(node: Node, copy: Option<&[u8]>) -> Arc<Node> {
        if let Some(mut a) = take() {
            if let Some(slot) = Arc::get_mut(&mut a) {
                let old = std::mem::replace(slot, node);
                if let Some(b) = copy {
                    if old.body.len() == b.len() {
                        slot.body = old.body;
                        slot.body.copy_from_slice(b);
                    } else {
                        slot.body = b.into();
                    }
                }
                return a;
            }
        }
        let mut node = node;
        if let Some(b) = copy {
            node.body = b.into();
        }
        Arc::new(node)
    }

    /// Drops a reference to a node; if it was the last, keeps the node for
    /// [`make`]. Its body, headers, name and correlation id stay with it (and
    /// are freed by the thread that reuses it) when they add up to at most
    /// [`KEEP_BODY`] bytes; a bigger message's are freed now.
    #[inline]
    pub(crate) fn recycle(mut a: Arc<Node>) {
        let Some(n) = Arc::get_mut(&mut a) else {
            return;
        };
        if n.size > KEEP_BODY as u64 {
            n.body = Box::default();
            n.extra = None;
        }
        n.deliveries.store(0, Relaxed);
        let _ = CACHE.try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return;
            };
            if c.len() >= CACHED {
                let batch: Vec<_> = c.drain(CACHED - BATCH..).collect();
                // A full global stack: the batch is freed.
                let _ = global().push(batch);
            }
            c.push(a);
        });
    }

    #[cfg(test)]
    mod tests {
        use super::super::Extra;
        use super::*;
        use std::sync::atomic::AtomicU32;

        fn node(body: &[u8]) -> Node {
            Node {
                id: 1,
                priority: 4,
                persistent: false,
                body: body.into(),
                extra: Extra::new(Default::default(), Some("n".into()), None),
                enqueued_at: 0,
                expires_at: u64::MAX,
                size: body.len() as u64,
                deliveries: AtomicU32::new(3),
            }
        }

        fn cached() -> usize {
            CACHE.with(|c| c.borrow().len())
        }

        #[test]
        fn node_is_64_bytes() {
            // One 80-byte allocation with the Arc counts; grows only on purpose.
            assert_eq!(std::mem::size_of::<Node>(), 64);
        }

        #[test]
        fn reuses_only_unique_nodes() {
            let a = make(node(b"a"), None);
            let (p, held) = (Arc::as_ptr(&a), a.clone());
            recycle(a); // still referenced: not kept
            let b = make(node(b"b"), None);
            assert_ne!(Arc::as_ptr(&b), p);
            drop(held);
            let pb = Arc::as_ptr(&b);
            recycle(b);
            CACHE.with(|c| {
                let c = c.borrow();
                let kept = c.last().unwrap();
                assert_eq!(kept.deliveries.load(Relaxed), 0);
                // A small message's parts stay, to be freed by the reusing thread.
                assert_eq!((&*kept.body, kept.name()), (&b"b"[..], Some("n")));
            });
            // Same length: the kept buffer takes the copy.
            let c = make(node(b""), Some(b"c"));
            assert_eq!(Arc::as_ptr(&c), pb, "last recycled, first reused");
            assert_eq!((&*c.body, c.name()), (&b"c"[..], Some("n")));
        }

        #[test]
        fn large_bodies_are_not_kept_and_the_cache_is_bounded() {
            let big = make(node(&vec![1; KEEP_BODY + 1]), None);
            recycle(big);
            CACHE.with(|c| {
                let c = c.borrow();
                let kept = c.last().unwrap();
                assert!(kept.body.is_empty() && kept.extra.is_none());
            });
            let all: Vec<_> = (0..10 * CACHED).map(|_| make(node(b"x"), None)).collect();
            for a in all {
                recycle(a);
                assert!(cached() <= CACHED);
            }
            assert!(global().len() <= GLOBAL);
        }
    }
}
