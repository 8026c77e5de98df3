//! The engine's part of a change of host: listing every message only memory
//! holds (a host closing cleanly writes them for its successor) and putting
//! such a list back (the successor, after its replay).

use super::Engine;
use crate::types::node::Node;
use std::sync::Arc;

/// One in-memory message of a queue: namespace, queue, the message, and its
/// due time if it is delayed.
pub(crate) type InMemory = (String, String, Arc<Node>, Option<u64>);

impl Engine {
    /// Every non-persistent message of every queue (ready, delayed or
    /// leased), each queue's in id order. Nothing is removed.
    pub(crate) fn in_memory_messages(&self) -> Vec<InMemory> {
        let mut out = Vec::new();
        for (ns_name, ns) in self.namespaces.read().iter() {
            for q in ns.all() {
                for (node, due) in q.in_memory() {
                    out.push((ns_name.clone(), q.name.clone(), node, due));
                }
            }
        }
        out
    }

    /// Puts back messages another host held in memory, with their ids and
    /// delivery counts (as recovery puts back journaled ones). One whose
    /// queue does not exist here is left out. Returns (put back, left out).
    pub(crate) fn restore_in_memory(
        &self,
        msgs: impl IntoIterator<Item = (String, String, Node, Option<u64>)>,
    ) -> (u64, u64) {
        let (mut put, mut left) = (0, 0);
        for (ns, queue, node, due) in msgs {
            let q = self.namespaces.read().get(&ns).and_then(|n| n.get(&queue));
            match q {
                Some(q) if !node.persistent => {
                    q.restore(Arc::new(node), due);
                    put += 1;
                }
                _ => left += 1,
            }
        }
        (put, left)
    }
}
