//! Behaviour tests: one per feature of the engine core, each error included.
//! Time-dependent tests drive a ManualClock; none sleeps for correctness.
//!
//! The conformance suite of the storage backends: every test taking a
//! `&Fixture` runs twice (see `conformance/mod.rs` and the `conformance!` list
//! at the end): `memory::<test>` on the in-memory broker, `journal::<test>` on a
//! data directory with persistent messages, where the `reopen_*` tests also
//! close the broker and check what the reopened directory brings back. The few
//! plain `#[test]`s say why they are not per backend.
//!
//! Contents, one file per feature:
//!
//! - `names.rs`          names, namespaces, queues
//! - `quotas.rs`         namespace quotas
//! - `capacity.rs`       a full queue: reject, timeout, block
//! - `messages.rs`       message fields, ids, priorities
//! - `ordering.rs`       FIFO within a priority, per producer, strict
//! - `receive.rs`        try, blocking, timeout, batches
//! - `leases.rs`         ack, expiry, redelivery, extend, nack, auto-ack
//! - `dead_letters.rs`   max deliveries, lease expiry, chains
//! - `ttl_delay.rs`      TTL and delay on either clock
//! - `admin.rs`          peek, cancel, purge, stats, delete; error text
//! - `storage.rs`        what the engine tells a storage backend
//! - `reopen.rs`         persistence across a reopen (journal)

mod admin;
mod capacity;
#[path = "../conformance/mod.rs"]
mod conformance;
mod dead_letters;
mod leases;
mod messages;
mod names;
mod ordering;
mod quotas;
mod receive;
mod reopen;
mod storage;
mod ttl_delay;

use admin::*;
use capacity::*;
use conformance::{Backend, Fixture, START};
use dead_letters::*;
use leases::*;
use libqueue::*;
use messages::*;
use names::*;
use ordering::*;
use quotas::*;
use receive::*;
use reopen::*;
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use ttl_delay::*;

const MS: Duration = Duration::from_millis(1);

fn ids(q: &Queue) -> Vec<u64> {
    let mut v = Vec::new();
    while let Some(d) = q.receive_auto_ack(Wait::Try).unwrap() {
        v.push(d.id());
    }
    v
}

// ---- the suite: every test above taking a `&Fixture`, once per backend -------------------------------

conformance! {
    queue_names_are_validated,
    queues_created_on_first_use_or_explicitly,
    invalid_queue_options_are_rejected,
    default_queue_needs_no_name,
    namespaces_are_isolated,
    quota_max_queues,
    quota_max_messages_is_exact_and_per_namespace,
    quota_max_bytes_and_message_size,
    default_max_message_size_is_enforced,
    full_queue_reject,
    full_queue_bytes_capacity,
    full_queue_timeout_on_the_clock,
    full_queue_blocks_until_room,
    blocked_sender_wakes_on_close,
    message_fields_round_trip,
    ids_increase_per_queue,
    invalid_priority_is_rejected,
    fifo_within_priority_higher_first,
    fifo_per_producer_across_threads,
    strict_fifo_queue_wide,
    receive_try_blocking_timeout,
    blocked_receiver_wakes_on_close,
    batches,
    batch_receive_timeout_on_the_clock,
    ack_removes_for_good,
    expired_lease_redelivers_and_stale_ack_fails,
    blocked_receiver_gets_redelivery_when_clock_moves,
    extend_renews_the_lease,
    nack_now_and_later,
    auto_ack_is_at_most_once,
    unsettled_delivery_dropped_is_redelivered_after_lease,
    max_deliveries_moves_to_dead_letter_queue,
    lease_expiry_can_dead_letter,
    max_deliveries_without_dlq_drops_and_counts,
    dead_letters_bypass_dlq_capacity,
    expired_messages_are_never_delivered,
    queue_default_ttl_and_delay,
    delayed_not_before_their_time,
    delayed_message_wakes_blocked_receiver,
    delayed_message_wakes_blocked_receiver_on_system_clock,
    message_expiring_while_delayed_is_dropped,
    peek_does_not_lease,
    cancel_pending_by_id,
    purge_removes_ready_and_delayed,
    stats_are_exact,
    delete_queue_frees_quota_and_closes_handles,
    blocked_receiver_sees_lease_expiry_on_system_clock,
    expired_messages_do_not_hold_capacity,
    blocked_sender_wakes_when_a_message_expires,
    late_ack_fails_even_if_nothing_else_ran,
    chained_dead_letters_keep_exact_sizes,
    reopen_after_ack_nack_and_extend,
    reopen_after_dead_letter_move,
    reopen_ttl_expiry_on_the_clock,
    reopen_delay_on_the_clock,
    reopen_after_purge_cancel_and_delete,
    reopen_keeps_priority_order,
    reopen_ids_continue,
    reopen_ids_not_reused_after_everything_was_acked,
    queue_outlives_its_broker,
    reopen_keeps_queue_options_and_volatile_messages_are_lost,
    reopen_stats_gauges_are_exact,
    reopen_repeatedly_keeps_delivery_counts,
    reopen_after_auto_ack_and_batches,
    recycled_messages_carry_nothing_over,
    deleted_queue_handles_stay_closed,
    give_back_by_ticket,
}
