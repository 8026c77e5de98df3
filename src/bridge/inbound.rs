//! Inbound: a remote source (a durable consumer) feeds a local queue. A remote
//! message is acked only once the local send returned (with `sync=always`,
//! once it is on the local disk); the bridge fetches only as many messages as
//! the local queue has room for, so a full queue holds the backlog remotely.

use super::mapping;
use super::remote::{Remote, RemoteError};
use super::stats::Shared;
use super::Tuning;
use crate::{Error, Message, OnFull, Queue};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// One inbound route: a remote origin (subject) and the local queue it feeds.
pub(crate) struct Route {
    pub(crate) queue: Queue,
    pub(crate) dlq: Queue,
    pub(crate) origin: String,
    pub(crate) durable: String,
    /// What the route claims before it receives (`claim.rs`).
    pub(crate) claim: super::claim::Slot,
}

/// How long one fetch waits at the remote for a first message.
const FETCH_WAIT: Duration = Duration::from_millis(500);

/// Runs one route until the bridge stops (or its queue is closed).
pub(crate) async fn run<R: Remote>(
    remote: Rc<R>,
    route: Route,
    source: Option<R::Source>,
    tuning: Tuning,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) {
    // One receiver per source and directory: a standby until the claim is ours.
    let Some(_claim) = route.claim.acquire(&stop, |e| shared.error(e)).await else {
        return;
    };
    let mut delay = tuning.backoff_min;
    let mut source = source;
    loop {
        if stop.load(Relaxed) {
            return;
        }
        let src = match &source {
            Some(s) => s,
            None => match remote.open_source(&route.origin, &route.durable).await {
                Ok(s) => source.insert(s),
                Err(e) => {
                    shared.error(&format!("receiving from {}: {}", route.origin, e.text()));
                    pause(&mut delay, &tuning, &stop).await;
                    continue;
                }
            },
        };
        let room = room(&route.queue, tuning.window);
        if room == 0 {
            // Back-pressure: the remote keeps the backlog until there is room.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let batch = match remote.fetch(src, room, FETCH_WAIT).await {
            Ok(b) => b,
            Err(e) => {
                shared.error(&format!("fetching from {}: {}", route.origin, e.text()));
                shared.set_connected(remote.connected());
                pause(&mut delay, &tuning, &stop).await;
                continue;
            }
        };
        delay = tuning.backoff_min;
        for m in batch {
            let v = R::view(&m);
            if let Some(p) = v.pending {
                shared.pending_inbound.store(p, Relaxed);
            }
            let local = mapping::inbound(v.headers.iter().copied(), v.body);
            let outcome = match local {
                Ok(msg) => route.queue.send_with(msg, OnFull::Reject).map(|_| true),
                Err(reason) => {
                    // Unmappable: the raw message, dead-lettered with the reason.
                    let mut raw = Message::new(v.body);
                    for (k, val) in &v.headers {
                        raw = raw.header(*k, *val);
                    }
                    dead_letter(
                        &route,
                        raw,
                        &format!("bridge: cannot be received: {reason}"),
                    )
                    .map(|_| false)
                }
            };
            let outcome = match outcome {
                Err(e @ (Error::MessageTooLarge { .. } | Error::InvalidArgument(_))) => {
                    let raw = Message::new(v.body);
                    dead_letter(
                        &route,
                        raw,
                        &format!("bridge: refused by the local queue: {e}"),
                    )
                    .map(|_| false)
                }
                o => o,
            };
            drop(v);
            match outcome {
                Ok(true) => match remote.ack(m).await {
                    Ok(()) => {
                        Shared::add(&shared.received, 1);
                        shared.progress();
                    }
                    // The remote redelivers it later: a local duplicate.
                    Err(e) => shared.error(&format!("ack to {}: {}", route.origin, e.text())),
                },
                Ok(false) => {
                    Shared::add(&shared.dead_lettered, 1);
                    let _ = remote.ack(m).await;
                }
                Err(Error::Closed) => return,
                Err(e) => {
                    // Full (raced), over quota, storage trouble: the remote
                    // keeps it and redelivers it later.
                    shared.error(&format!("local send to {}: {e}", route.queue.name()));
                    Shared::add(&shared.retries, 1);
                    if let Err(RemoteError::Transient(t) | RemoteError::Permanent(t)) = remote
                        .retry_later(m, tuning.backoff_min.max(FETCH_WAIT))
                        .await
                    {
                        shared.error(&t);
                    }
                }
            }
        }
    }
}

fn dead_letter(route: &Route, m: Message, reason: &str) -> crate::Result<u64> {
    route.dlq.send_with(
        mapping::dead_letter(m, route.queue.name(), reason, None),
        OnFull::Reject,
    )
}

/// How many messages the local queue can take now (at most `cap`).
fn room(q: &Queue, cap: usize) -> usize {
    let Some(max) = q.options().max_messages else {
        return cap;
    };
    let s = q.stats();
    let held = s.ready + s.leased + s.delayed;
    usize::try_from(max.saturating_sub(held)).map_or(cap, |r| r.min(cap))
}

async fn pause(delay: &mut Duration, tuning: &Tuning, stop: &AtomicBool) {
    let mut left = *delay;
    while !left.is_zero() && !stop.load(Relaxed) {
        let s = left.min(Duration::from_millis(200));
        tokio::time::sleep(s).await;
        left -= s;
    }
    *delay = (*delay * 2).min(tuning.backoff_max);
}
