//! A libqueue message as a remote engine's message and back, engine-neutral:
//! a body plus text headers. libqueue's own fields travel as `Lq-*` headers;
//! the user's headers travel under their own names.

use crate::{Message, MessageView, MAX_PRIORITY};
use std::time::Duration;

/// The message name.
pub const NAME: &str = "Lq-Name";
/// The correlation id.
pub const CORRELATION_ID: &str = "Lq-Correlation-Id";
/// The priority, `0`–`9`.
pub const PRIORITY: &str = "Lq-Priority";
/// The time to live left when the message left its queue, in milliseconds.
pub const TTL_MS: &str = "Lq-Ttl-Ms";
/// `1` for a persistent message, `0` for another.
pub const PERSISTENT: &str = "Lq-Persistent";

/// Set by an engine on a received message it could not map (the value says
/// why): [`inbound`] refuses the message with that reason.
pub(crate) const UNMAPPABLE: &str = "Lq-Unmappable";

/// Prefixes of header names reserved to the bridge and to the remote engine:
/// a libqueue header with such a name cannot be forwarded.
const RESERVED: [&str; 2] = ["lq-", "nats-"];

/// A message ready for the wire: text headers (names checked as the remote
/// accepts them) and the body.
#[derive(Debug, Clone)]
pub(crate) struct Mapped {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// A header name every remote accepts: visible ASCII, no `:`, not empty.
fn valid_name(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_graphic() && c != ':')
}

/// A header value every remote accepts: UTF-8 without CR, LF or NUL.
fn valid_value(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.contains(['\r', '\n', '\0']))
}

/// Maps a leased local message for forwarding; `now` on the queue's clock.
/// `Err(reason)` when it cannot be mapped (it is then dead-lettered locally).
pub(crate) fn outbound<V: MessageView + ?Sized>(m: &V, now: u64) -> Result<Mapped, String> {
    let mut headers = Vec::with_capacity(m.headers().len() + 5);
    for (k, v) in m.headers() {
        if !valid_name(k) {
            return Err(format!(
                "header {k:?}: a forwarded header name must be visible ASCII without ':'"
            ));
        }
        let lower = k.to_ascii_lowercase();
        if RESERVED.iter().any(|p| lower.starts_with(p)) {
            return Err(format!(
                "header {k:?}: names starting with Lq- or Nats- are reserved to the bridge"
            ));
        }
        let Some(v) = valid_value(v) else {
            return Err(format!(
                "header {k:?}: a forwarded header value must be UTF-8 without CR, LF or NUL"
            ));
        };
        headers.push((k.clone(), v.to_string()));
    }
    if let Some(n) = m.name() {
        headers.push((NAME.into(), checked(NAME, n)?));
    }
    if let Some(c) = m.correlation_id() {
        headers.push((CORRELATION_ID.into(), checked(CORRELATION_ID, c)?));
    }
    headers.push((PRIORITY.into(), m.priority().to_string()));
    if let Some(at) = m.expires_at() {
        // At least 1 ms: a message the engine delivered has not expired yet.
        let left = at.saturating_sub(now).div_ceil(1_000_000).max(1);
        headers.push((TTL_MS.into(), left.to_string()));
    }
    headers.push((
        PERSISTENT.into(),
        if m.is_persistent() { "1" } else { "0" }.into(),
    ));
    Ok(Mapped {
        headers,
        body: m.body().to_vec(),
    })
}

fn checked(what: &str, v: &str) -> Result<String, String> {
    valid_value(v.as_bytes())
        .map(str::to_string)
        .ok_or_else(|| format!("{what} {v:?}: CR, LF and NUL cannot be forwarded"))
}

/// Maps a remote message (its text headers, in order, and body) to a local one.
/// Headers of the remote engine (`Nats-*`) are left behind; other headers
/// become libqueue headers. `Err(reason)`: an `Lq-*` header is malformed.
pub(crate) fn inbound<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) -> Result<Message, String> {
    let mut m = Message::new(body);
    for (k, v) in headers {
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("nats-") {
            continue;
        }
        if !lower.starts_with("lq-") {
            m = m.header(k, v);
            continue;
        }
        let bad = |what: &str| format!("header {k}: {v:?} is not {what}");
        match lower.as_str() {
            "lq-name" => m = m.name(v),
            "lq-correlation-id" => m = m.correlation_id(v),
            "lq-priority" => match v.parse::<u8>() {
                Ok(p) if p <= MAX_PRIORITY => m = m.priority(p),
                _ => return Err(bad("a priority from 0 to 9")),
            },
            "lq-ttl-ms" => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => m = m.ttl(Duration::from_millis(ms)),
                _ => return Err(bad("a positive number of milliseconds")),
            },
            "lq-unmappable" => return Err(v.to_string()),
            "lq-persistent" => match v {
                "1" => m = m.persistent(true),
                "0" => m = m.persistent(false),
                _ => return Err(bad("0 or 1")),
            },
            _ => return Err(format!("header {k}: unknown Lq- header")),
        }
    }
    Ok(m)
}

/// A copy of `m` for a dead-letter queue, with the engine's dead-letter headers.
pub(crate) fn dead_letter(mut m: Message, queue: &str, reason: &str, id: Option<u64>) -> Message {
    m.headers
        .insert("x-dead-letter-reason".into(), reason.as_bytes().to_vec());
    m.headers
        .insert("x-dead-letter-queue".into(), queue.as_bytes().to_vec());
    if let Some(id) = id {
        m.headers
            .insert("x-original-id".into(), id.to_string().into_bytes());
    }
    m.ttl = None;
    m.delay = None;
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Broker;

    #[test]
    fn round_trip_keeps_every_field() {
        let q = Broker::new().queue("m").unwrap();
        q.send(
            Message::new("body")
                .name("n")
                .correlation_id("c")
                .priority(7)
                .ttl(Duration::from_secs(60))
                .persistent(true)
                .header("k", "v"),
        )
        .unwrap();
        let d = q.try_receive().unwrap().unwrap();
        let mapped = outbound(&d, q.clock().now()).unwrap();
        let back = inbound(
            mapped.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mapped.body,
        )
        .unwrap();
        assert_eq!(back.get_name(), Some("n"));
        assert_eq!(back.correlation_id.as_deref(), Some("c"));
        assert_eq!(back.priority, Some(7));
        assert_eq!(back.persistent, Some(true));
        assert_eq!(back.headers().get("k").map(Vec::as_slice), Some(&b"v"[..]));
        let ttl = back.ttl.unwrap();
        assert!(ttl <= Duration::from_secs(60) && ttl > Duration::from_secs(50));
        assert_eq!(back.body(), b"body");
    }

    #[test]
    fn unmappable_headers_are_refused_with_a_reason() {
        let q = Broker::new().queue("m").unwrap();
        for (k, v) in [
            ("a b", &b"x"[..]),
            ("Nats-Msg-Id", b"x"),
            ("lq-name", b"x"),
            ("k", b"\xff"),
            ("k", b"a\r\nb"),
        ] {
            q.send(Message::new("b").header(k, v)).unwrap();
            let d = q.try_receive().unwrap().unwrap();
            assert!(outbound(&d, 0).is_err(), "{k:?}");
            d.ack().unwrap();
        }
        assert!(inbound([("Lq-Priority", "12")], b"").is_err());
        assert!(inbound([("Lq-Ttl-Ms", "x")], b"").is_err());
        assert!(inbound([("Lq-What", "x")], b"").is_err());
        let m = inbound([("Nats-Msg-Id", "x"), ("k", "v")], b"").unwrap();
        assert_eq!(m.headers().len(), 1);
    }
}
