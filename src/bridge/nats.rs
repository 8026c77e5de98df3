//! The [`Remote`] of NATS JetStream (the `async-nats` client): publishes carry
//! `Nats-Msg-Id` and wait for the stream's PubAck; inbound is a durable pull
//! consumer with explicit acks.

use super::mapping::Mapped;
use super::remote::Stored;
use super::remote::{Fetched, Remote, RemoteError};
use super::stats::Shared;
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, AckKind};
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// A connection to one NATS server (or cluster) and its JetStream context.
pub(crate) struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
}

/// How the bridge connects (from the builder).
pub(crate) struct ConnectSettings {
    pub(crate) url: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) ack_timeout: Duration,
    pub(crate) backoff_max: Duration,
    /// Keep trying the first connection instead of failing.
    pub(crate) background: bool,
}

impl Nats {
    /// Connects; with `background`, returns at once and connects (and
    /// reconnects) by itself forever.
    pub(crate) async fn connect(s: &ConnectSettings, shared: Arc<Shared>) -> Result<Nats, String> {
        let events = shared.clone();
        let cap = s.backoff_max;
        let mut opts = async_nats::ConnectOptions::new()
            .connection_timeout(s.connect_timeout)
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| {
                let ms = 50u64.saturating_mul(1 << attempts.min(20));
                Duration::from_millis(ms).min(cap)
            })
            .event_callback(move |event| {
                let shared = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => shared.set_connected(true),
                        async_nats::Event::Disconnected => {
                            shared.set_connected(false);
                            shared.error("disconnected from the NATS server");
                        }
                        other => shared.error(&format!("nats: {other}")),
                    }
                }
            });
        if s.background {
            opts = opts.retry_on_initial_connect();
        }
        let client = opts
            .connect(s.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", s.url))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(s.ack_timeout);
        Ok(Nats { client, js })
    }

    /// Creates the stream `name` taking `subjects` if there is none of that name.
    pub(crate) async fn ensure_stream(
        &self,
        name: &str,
        subjects: &[String],
        duplicate_window: Option<Duration>,
    ) -> Result<(), String> {
        let mut cfg = jetstream::stream::Config {
            name: name.to_string(),
            subjects: subjects.to_vec(),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        if let Some(w) = duplicate_window {
            cfg.duplicate_window = w;
        }
        self.js
            .get_or_create_stream(cfg)
            .await
            .map(|_| ())
            .map_err(|e| format!("stream {name}: {e}"))
    }
}

fn transient(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::Transient(e.to_string())
}

impl Remote for Nats {
    type Pending = jetstream::context::PublishAckFuture;
    type Incoming = jetstream::Message;
    type Source = consumer::Consumer<consumer::pull::Config>;

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    async fn check_target(&self, target: &str) -> Result<(), RemoteError> {
        match self.js.stream_by_subject(target).await {
            Ok(_) => Ok(()),
            Err(e) => Err(RemoteError::Permanent(format!(
                "no JetStream stream takes subject {target:?}: {e}"
            ))),
        }
    }

    async fn publish(
        &self,
        target: &str,
        msg_id: &str,
        m: &Mapped,
    ) -> Result<Self::Pending, RemoteError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &m.headers {
            // The mapping checked both; a refusal here is still only this message's.
            let k = HeaderName::try_from(k.as_str())
                .map_err(|e| RemoteError::Permanent(format!("header {k:?}: {e}")))?;
            let v = HeaderValue::try_from(v.as_str())
                .map_err(|e| RemoteError::Permanent(format!("header {k}: {e}")))?;
            headers.insert(k, v);
        }
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        let publish = jetstream::message::PublishMessage::build()
            .payload(m.body.clone().into())
            .headers(headers);
        self.js
            .send_publish(target.to_string(), publish)
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::MaxPayloadExceeded => RemoteError::Permanent(e.to_string()),
                _ => transient(e),
            })
    }

    async fn confirm(&self, p: Self::Pending) -> Result<Stored, RemoteError> {
        match p.await {
            Ok(ack) => Ok(Stored {
                duplicate: ack.duplicate,
            }),
            Err(e) => Err(match e.kind() {
                PublishErrorKind::MaxPayloadExceeded => RemoteError::Permanent(e.to_string()),
                PublishErrorKind::StreamNotFound => {
                    transient("no JetStream stream takes the subject (any more)")
                }
                _ => transient(format!("publish not confirmed: {e}")),
            }),
        }
    }

    async fn open_source(&self, origin: &str, durable: &str) -> Result<Self::Source, RemoteError> {
        let stream = self.js.stream_by_subject(origin).await.map_err(|e| {
            RemoteError::Permanent(format!("no JetStream stream takes subject {origin:?}: {e}"))
        })?;
        let stream = self.js.get_stream(&stream).await.map_err(transient)?;
        stream
            .get_or_create_consumer(
                durable,
                consumer::pull::Config {
                    durable_name: Some(durable.to_string()),
                    filter_subject: origin.to_string(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| transient(format!("consumer {durable}: {e}")))
    }

    async fn fetch(
        &self,
        src: &Self::Source,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Self::Incoming>, RemoteError> {
        let mut batch = src
            .batch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(transient)?;
        let mut out = Vec::with_capacity(max.min(1024));
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => out.push(m),
                Err(e) if out.is_empty() => return Err(transient(e)),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    fn view(m: &Self::Incoming) -> Fetched<'_> {
        let mut headers = Vec::new();
        if let Some(h) = &m.headers {
            for (k, vs) in h.iter() {
                // NATS allows several values; libqueue keeps the last.
                if let Some(v) = vs.last() {
                    headers.push((k.as_ref(), v.as_str()));
                }
            }
        }
        Fetched {
            headers,
            body: &m.payload,
            pending: m.info().ok().map(|i| i.pending),
        }
    }

    async fn ack(&self, m: Self::Incoming) -> Result<(), RemoteError> {
        m.ack().await.map_err(transient)
    }

    async fn retry_later(&self, m: Self::Incoming, delay: Duration) -> Result<(), RemoteError> {
        m.ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(transient)
    }
}
