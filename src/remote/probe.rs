//! Asks the live host of a data directory who it is, over one short
//! connection, without attaching a broker — so a monitor (`libqueue stats`)
//! never becomes a directory's host or takes it over.

use super::host::{socket_path, HostInfo};
use super::wire::{self, op, Dec, Enc};
use crate::error::{Error, Result};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the probe waits for each answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl HostInfo {
    /// The host of the data directory `dir` and its clients, asked over one
    /// connection that is closed again (it never opens the journal, attaches
    /// a broker or takes over). `Ok(None)` when no process hosts `dir` (no
    /// socket, or a stale one nobody listens on). The probe's own connection
    /// is left out of [`clients`](HostInfo::clients). A host that refuses
    /// this user, or does not answer, is an [`Error::Io`].
    pub fn probe(dir: impl AsRef<Path>) -> Result<Option<HostInfo>> {
        let path = socket_path(dir.as_ref());
        let io =
            |what: &str, e: std::io::Error| Error::Io(format!("{what} {}: {e}", path.display()));
        let mut s = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                return Ok(None)
            }
            Err(e) => return Err(io("cannot connect to", e)),
        };
        s.set_read_timeout(Some(PROBE_TIMEOUT))
            .and_then(|_| s.set_write_timeout(Some(PROBE_TIMEOUT)))
            .map_err(|e| io("cannot set timeouts on", e))?;
        let me = std::process::id();
        let mut hello = Enc::new(0, op::HELLO);
        hello.u16(wire::VERSION).u32(me);
        let ask = Enc::new(1, op::HOST_INFO).finish().expect("small");
        let refused = |e: std::io::Error| io("the host refused this process on", e);
        s.write_all(&hello.finish().expect("small"))
            .map_err(refused)?;
        let body = read_reply(&mut s, 0).map_err(refused)?;
        let mut d = Dec::new(&body[wire::HEADER..]);
        status(&mut d)?;
        s.write_all(&ask).map_err(|e| io("cannot ask", e))?;
        let body = read_reply(&mut s, 1).map_err(|e| io("no answer from", e))?;
        let mut d = Dec::new(&body[wire::HEADER..]);
        status(&mut d)?;
        let mut info = d
            .host_info()
            .map_err(|m| Error::Io(format!("bad answer from {}: {}", path.display(), m.0)))?;
        // Our own connection: the latest one of this pid.
        if let Some(i) = info
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.pid == me)
            .max_by_key(|(_, c)| c.since)
            .map(|(i, _)| i)
        {
            info.clients.remove(i);
        }
        Ok(Some(info))
    }
}

/// The status byte of a reply: 0 ok, 1 an error (returned).
fn status(d: &mut Dec<'_>) -> Result<()> {
    match d.u8() {
        Ok(0) => Ok(()),
        Ok(1) => Err(d
            .error()
            .unwrap_or_else(|m| Error::Io(format!("bad answer: {}", m.0)))),
        _ => Err(Error::Io("bad answer from the host".into())),
    }
}

/// Reads frames until the reply to `id` (a bounded frame; the whole body).
fn read_reply(s: &mut UnixStream, id: u64) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::new(ErrorKind::InvalidData, what.to_string());
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                std::io::Error::new(ErrorKind::ConnectionAborted, "the host hung up")
            } else {
                e
            }
        })?;
        let len = u32::from_le_bytes(len) as usize;
        if !(wire::HEADER..=wire::MAX_FRAME).contains(&len) {
            return Err(bad("frame length out of bounds"));
        }
        let mut body = Vec::new();
        Read::by_ref(s).take(len as u64).read_to_end(&mut body)?;
        if body.len() < len {
            return Err(bad("the host hung up mid-frame"));
        }
        let (rid, o) = Dec::new(&body).header().map_err(|_| bad("bad frame"))?;
        if o == op::REPLY && rid == id {
            return Ok(body);
        }
    }
}
