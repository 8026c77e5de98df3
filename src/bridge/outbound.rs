//! Outbound: a local queue drained to a remote target, in order, each local
//! message acked only after the remote confirmed it stored it.
//!
//! Up to `window` publishes are in flight, confirmed in the order they were
//! sent. A failure stops the pipe: what was confirmed is acked, the rest is
//! published again, in order, after a capped exponential backoff (with the
//! same stable message ids, so the remote drops what it had already stored),
//! while the local leases are kept alive — until it goes through, forever,
//! or until a message is older than `max_age` (then it is dead-lettered).

use super::mapping::{self, Mapped};
use super::remote::{Remote, RemoteError, Stored};
use super::stats::Shared;
use super::Tuning;
use crate::{Delivery, Error, MessageView, Queue, Wait};
use futures_util::future::join_all;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// One outbound route: a local queue and the remote target it drains to.
pub(crate) struct Route {
    pub(crate) queue: Queue,
    pub(crate) dlq: Queue,
    pub(crate) target: String,
    /// `lq:<identity>:<namespace>:<queue>:`; the message id follows.
    pub(crate) id_prefix: String,
    /// What the route claims before it drains the queue (`claim.rs`).
    pub(crate) claim: super::claim::Slot,
}

struct Ctx<R: Remote> {
    remote: Rc<R>,
    route: Route,
    tuning: Tuning,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    /// Why the last confirm failed (for `last_error`).
    unconfirmed: std::cell::Cell<Option<String>>,
}

/// Runs one route until the bridge stops (or its queue is closed).
pub(crate) async fn run<R: Remote>(
    remote: Rc<R>,
    route: Route,
    tuning: Tuning,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) {
    // One forwarder per queue: a standby until the claim is ours; held
    // (and the queue drained) until this function returns.
    let Some(_claim) = route.claim.acquire(&stop, |e| shared.error(e)).await else {
        return;
    };
    let cx = Ctx {
        remote,
        route,
        tuning,
        shared,
        stop,
        unconfirmed: Default::default(),
    };
    let mut ready: VecDeque<Delivery> = VecDeque::new();
    let mut inflight: VecDeque<(Delivery, Mapped, R::Pending)> = VecDeque::new();
    let window = cx.tuning.window.max(1);
    loop {
        if cx.stop.load(Relaxed) {
            // What is in flight is confirmed (acked) first; the rest goes back.
            let left = cx.settle_all(inflight).await;
            give_back(
                &cx.route.queue,
                left.into_iter().map(|(d, _)| d).chain(ready),
            );
            return;
        }
        // Fill the pipe in local order.
        let mut failed: Option<(Delivery, Mapped, String)> = None;
        while inflight.len() < window {
            if ready.is_empty() {
                match cx.route.queue.receive_batch(window, Wait::Try) {
                    Ok(v) => ready.extend(v),
                    Err(Error::Closed) => return,
                    Err(e) => {
                        cx.shared.error(&format!("local receive: {e}"));
                        break;
                    }
                }
            }
            let Some(d) = ready.pop_front() else { break };
            let m = match mapping::outbound(&d, cx.route.queue.clock().now()) {
                Ok(m) => m,
                Err(reason) => {
                    cx.dead_letter(d, &format!("bridge: cannot be forwarded: {reason}"));
                    continue;
                }
            };
            match cx
                .remote
                .publish(&cx.route.target, &cx.msg_id(&d), &m)
                .await
            {
                Ok(p) => inflight.push_back((d, m, p)),
                Err(RemoteError::Permanent(r)) => cx.dead_letter(d, &r),
                Err(RemoteError::Transient(e)) => {
                    failed = Some((d, m, e));
                    break;
                }
            }
        }
        if failed.is_none() {
            if let Some((d, m, p)) = inflight.pop_front() {
                match cx.remote.confirm(p).await {
                    Ok(s) => cx.stored(d, s),
                    Err(RemoteError::Permanent(r)) => cx.dead_letter(d, &r),
                    Err(RemoteError::Transient(e)) => failed = Some((d, m, e)),
                }
                if failed.is_none() {
                    continue;
                }
                // The oldest failed: the rest of the pipe is settled first,
                // and the failed one goes back in front of it, in order.
                let (d0, m0, e0) = failed.take().expect("set above");
                let mut retry = vec![(d0, m0)];
                retry.extend(cx.settle_all(std::mem::take(&mut inflight)).await);
                cx.retry(retry, e0, &mut ready).await;
                continue;
            }
            if ready.is_empty() {
                // Nothing to do: wait for local work off the runtime's thread.
                let q = cx.route.queue.clone();
                let got = tokio::task::spawn_blocking(move || {
                    q.receive_batch(window, Wait::For(Duration::from_millis(200)))
                })
                .await;
                match got {
                    Ok(Ok(v)) => ready.extend(v),
                    Ok(Err(Error::Closed)) => return,
                    Ok(Err(e)) => {
                        cx.shared.error(&format!("local receive: {e}"));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => cx.shared.error(&format!("local receive: {e}")),
                }
            }
            continue;
        }
        // A send failed: settle what is in flight, then retry from there.
        let (d, m, e) = failed.expect("checked");
        let mut retry = cx.settle_all(std::mem::take(&mut inflight)).await;
        retry.push((d, m));
        cx.retry(retry, e, &mut ready).await;
    }
}

/// Gives leased messages back to their queue (at stop): ready at once, and
/// not counted as a delivery.
fn give_back(q: &Queue, held: impl IntoIterator<Item = Delivery>) {
    for d in held {
        if let Some(t) = d.ticket() {
            let _ = q.give_back(t);
        }
    }
}

impl<R: Remote> Ctx<R> {
    fn msg_id(&self, d: &Delivery) -> String {
        format!("{}{}", self.route.id_prefix, d.id())
    }

    /// Moves `d` to the dead-letter queue with `reason`, then acks it. If the
    /// dead-letter queue refuses it, the message stays (nacked, retried later).
    fn dead_letter(&self, d: Delivery, reason: &str) {
        let copy = mapping::dead_letter(
            d.to_message(),
            self.route.queue.name(),
            reason,
            Some(d.id()),
        );
        match self.route.dlq.send_with(copy, crate::OnFull::Reject) {
            Ok(_) => {
                let _ = d.ack();
                Shared::add(&self.shared.dead_lettered, 1);
            }
            Err(e) => {
                self.shared
                    .error(&format!("dead-letter queue refused ({reason}): {e}"));
                let _ = d.nack_with(Some(self.tuning.backoff_max), reason);
            }
        }
    }

    /// The remote stored it: ack locally.
    fn stored(&self, d: Delivery, s: Stored) {
        if s.duplicate {
            Shared::add(&self.shared.duplicates, 1);
        }
        match d.ack() {
            Ok(()) => Shared::add(&self.shared.forwarded, 1),
            // Redelivered locally meanwhile: it comes round again and the
            // remote suppresses the copy (same message id).
            Err(Error::LeaseExpired { .. }) => {}
            Err(e) => self.shared.error(&format!("local ack: {e}")),
        }
        self.shared.progress();
    }

    /// Confirms everything in flight at once; returns those not stored, in order.
    async fn settle_all(
        &self,
        inflight: VecDeque<(Delivery, Mapped, R::Pending)>,
    ) -> Vec<(Delivery, Mapped)> {
        let (held, pending): (Vec<_>, Vec<_>) =
            inflight.into_iter().map(|(d, m, p)| ((d, m), p)).unzip();
        let results = join_all(pending.into_iter().map(|p| self.remote.confirm(p))).await;
        let mut left = Vec::new();
        for ((d, m), r) in held.into_iter().zip(results) {
            match r {
                Ok(s) => self.stored(d, s),
                Err(RemoteError::Permanent(r)) => self.dead_letter(d, &r),
                Err(RemoteError::Transient(e)) => {
                    self.unconfirmed.set(Some(e));
                    left.push((d, m));
                }
            }
        }
        left
    }

    /// Publishes `retry` again, in order, with backoff, until all are stored
    /// (or dead-lettered). `ready` (received, not yet sent) is kept leased.
    async fn retry(
        &self,
        mut retry: Vec<(Delivery, Mapped)>,
        mut error: String,
        ready: &mut VecDeque<Delivery>,
    ) {
        let mut delay = self.tuning.backoff_min;
        while !retry.is_empty() {
            self.shared
                .error(&format!("forwarding to {}: {error}", self.route.target));
            Shared::add(&self.shared.retries, retry.len() as u64);
            self.shared.set_connected(self.remote.connected());
            if !self.pause(delay, &retry, ready).await {
                give_back(
                    &self.route.queue,
                    retry.drain(..).map(|(d, _)| d).chain(ready.drain(..)),
                );
                return;
            }
            delay = (delay * 2).min(self.tuning.backoff_max);
            if let Some(max_age) = self.tuning.max_age {
                let now = self.route.queue.clock().now();
                let (old, young): (Vec<_>, Vec<_>) = retry.into_iter().partition(|(d, _)| {
                    Duration::from_nanos(now.saturating_sub(d.enqueued_at())) > max_age
                });
                for (d, _) in old {
                    self.dead_letter(
                        d,
                        &format!("bridge: not forwarded within {max_age:?}: {error}"),
                    );
                }
                retry = young;
            }
            let mut sent = Vec::new();
            let mut unsent = Vec::new();
            let mut send_error = None;
            let mut rest = retry.into_iter();
            for (d, m) in rest.by_ref() {
                match self
                    .remote
                    .publish(&self.route.target, &self.msg_id(&d), &m)
                    .await
                {
                    Ok(p) => sent.push((d, m, p)),
                    Err(RemoteError::Permanent(r)) => self.dead_letter(d, &r),
                    Err(RemoteError::Transient(e)) => {
                        send_error = Some(e);
                        unsent.push((d, m));
                        break;
                    }
                }
            }
            unsent.extend(rest);
            // Those sent precede those not sent: the order is kept.
            let mut left = self.settle_all(sent.into()).await;
            left.extend(unsent);
            if let Some(e) = send_error {
                error = e;
            } else if !left.is_empty() {
                error = self
                    .unconfirmed
                    .take()
                    .unwrap_or_else(|| "publish not confirmed".into());
            }
            retry = left;
        }
        self.shared.set_connected(self.remote.connected());
    }

    /// Sleeps `delay` in slices, keeping the held leases alive; false if the
    /// bridge is stopping.
    async fn pause(
        &self,
        delay: Duration,
        retry: &[(Delivery, Mapped)],
        ready: &VecDeque<Delivery>,
    ) -> bool {
        let lease = self.route.queue.options().lease_time;
        let slice = (lease / 3).clamp(Duration::from_millis(1), Duration::from_millis(200));
        let mut left = delay;
        loop {
            for d in retry.iter().map(|(d, _)| d).chain(ready.iter()) {
                let _ = d.extend();
            }
            if self.stop.load(Relaxed) {
                return false;
            }
            if left.is_zero() {
                return true;
            }
            let s = slice.min(left);
            tokio::time::sleep(s).await;
            left -= s;
        }
    }
}
