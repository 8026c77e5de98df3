//! The C ABI: the only place in the crate with `extern "C"`.
//!
//! Every exported function runs its body through `run` (or `run_free` for
//! the `_free` functions): panics are caught and become [`lq_status::LQ_PANIC`],
//! NULL pointers become [`lq_status::LQ_NULL_POINTER`], every [`Error`](crate::Error) becomes
//! its own pinned status, and the detail of the last failure is kept per thread
//! for [`lq_last_error_message`]. Outputs are written only on success.
//!
//! The boundary itself, shared by the handle files (which import it, never
//! each other's helpers):
//! - `status.rs`: `lq_status` from one table, `lq_status_str`
//! - `boundary.rs`: `run`/`run_free`, the pointer helpers, `check_open`,
//!   `lq_last_error_message`, `lq_version`, `LQ_WAIT_FOREVER`
//!
//! One file per handle type:
//! - `options.rs`: `lq_broker_options`, `lq_queue_options`, `lq_quotas`
//! - `broker.rs`: `lq_broker`, `lq_namespace`, the recovery report, the host info
//! - `strings.rs`: `lq_strings` (a list of names)
//! - `message.rs`: `lq_message` (what a producer sends)
//! - `queue.rs`: `lq_queue` (send, receive, peek, stats, the pollable fd, close)
//! - `delivery.rs`: `lq_delivery` (a received or peeked message)
//! - `topic.rs`: `lq_topic`
//! - `pool.rs`: `lq_pool_builder`, `lq_pool`, `lq_reply` (C callbacks)
//! - `rpc.rs`: `lq_rpc_client`
//! - `bridge.rs`: `lq_bridge_builder`, `lq_bridge` (feature `bridge`, which the
//!   shipped library has; the header declares them under `LQ_HAVE_BRIDGE`)
//!
//! The C conventions (status table, ownership, threads) are in `docs/c-api.md`.

#![allow(non_camel_case_types)]

mod boundary;
#[cfg(feature = "bridge")]
mod bridge;
mod broker;
mod delivery;
mod message;
mod options;
mod pool;
mod queue;
mod rpc;
mod status;
mod strings;
mod topic;

// Every exported item, reachable from Rust too (benches/ffi_boundary.rs calls
// the C ABI from Rust to measure what the boundary costs).
pub use boundary::{lq_last_error_message, lq_version, LQ_WAIT_FOREVER};
#[cfg(feature = "bridge")]
pub use bridge::*;
pub use broker::{
    lq_broker, lq_broker_close, lq_broker_create_namespace, lq_broker_flush, lq_broker_free,
    lq_broker_get_namespace, lq_broker_host_info, lq_broker_is_attached, lq_broker_is_closed,
    lq_broker_list_namespaces, lq_broker_namespace, lq_broker_open, lq_broker_queue,
    lq_broker_recovery_damage, lq_broker_recovery_report, lq_host_client, lq_host_info,
    lq_namespace, lq_namespace_create_queue, lq_namespace_delete_queue, lq_namespace_free,
    lq_namespace_get_queue, lq_namespace_get_stats, lq_namespace_list, lq_namespace_name,
    lq_namespace_queue, lq_namespace_stats, lq_namespace_topic, lq_recovery_report,
};
pub use delivery::*;
pub use message::{
    lq_message, lq_message_free, lq_message_new, lq_message_set_correlation_id,
    lq_message_set_delay_ms, lq_message_set_header, lq_message_set_name, lq_message_set_persistent,
    lq_message_set_priority, lq_message_set_ttl_ms, lq_message_size,
};
pub use options::*;
pub use pool::*;
pub use queue::*;
pub use rpc::*;
pub use status::{lq_status, lq_status_str};
pub use strings::{lq_strings, lq_strings_free, lq_strings_get, lq_strings_len};
pub use topic::*;
