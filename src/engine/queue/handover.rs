//! What a change of host needs from a queue: leasing again, by id, a message
//! whose holder survived the old host (`reclaim`), and listing the messages
//! only memory holds (`in_memory`), which a host closing cleanly hands to its
//! successor (docs/multi-process.md).

use super::*;

impl QueueCore {
    /// Leases the ready message `id` (put back by the new host's replay, or
    /// handed over) to the process that held it on the old host, keeping its
    /// delivery count: the same delivery goes on. `seen` is the delivery
    /// count the holder was given; a message delivered since (a higher count
    /// here) belongs to a later holder. [`Error::LeaseExpired`] if it is not
    /// ready here (acked, dead-lettered, expired, taken by another consumer,
    /// or a non-persistent message lost with a crashed host).
    pub(crate) fn reclaim(self: &Arc<Self>, id: u64, seen: u32) -> Result<Received> {
        self.check_open()?;
        let home = home_shard();
        let mut found = None;
        for lane in self.lanes.iter().filter_map(|l| l.get()) {
            let mut st = lane.stash();
            if let Some(n) = st.get(&id) {
                if n.deliveries.load(Relaxed) > seen {
                    break;
                }
                found = st.remove(&id);
                break;
            }
        }
        self.watch_refresh();
        let node = found.ok_or(Error::LeaseExpired { id })?;
        // The holder's count is the true one (a `Delivered` record lost with
        // an unsynced journal leaves a lower count): recorded again.
        if node.deliveries.load(Relaxed) < seen {
            node.deliveries.store(seen, Relaxed);
            self.record_delivered(&node, seen);
        }
        let c = self.c(home);
        bump(&c.taken_leased, 1);
        let shard = home & self.mask;
        let deadline = self.clock.now().saturating_add(nanos(self.opts.lease_time));
        let token = self.leases[shard].lock().insert(node.clone(), deadline);
        // Placed again (see `stats`: a pass that ran while it was between its
        // lane and the lease table did not see it).
        self.note_added(node.enqueued_at);
        self.note_due(deadline);
        let delivery_count = node.deliveries.load(Relaxed);
        Ok(Received {
            node,
            lease: Some(HeldLease {
                queue: self.clone(),
                key: LeaseKey { shard, token },
            }),
            delivery_count,
        })
    }

    /// Every non-persistent message it holds — ready, delayed (with its due
    /// time) or leased — in id order. Nothing is removed.
    pub(crate) fn in_memory(&self) -> Vec<(Arc<Node>, Option<u64>)> {
        let mut out = Vec::new();
        for lane in self.lanes.iter().filter_map(|l| l.get()) {
            let st = lane.stash();
            out.extend(
                st.values()
                    .filter(|n| !n.persistent)
                    .map(|n| (n.clone(), None)),
            );
        }
        out.extend(
            self.delayed
                .lock()
                .entries()
                .filter(|(_, n)| !n.persistent)
                .map(|(due, n)| (n.clone(), Some(due))),
        );
        for s in self.leases.iter() {
            out.extend(
                s.lock()
                    .nodes()
                    .filter(|n| !n.persistent)
                    .map(|n| (n.clone(), None)),
            );
        }
        out.sort_by_key(|(n, _)| n.id);
        out
    }
}
