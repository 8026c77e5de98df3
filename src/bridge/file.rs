//! The bridges file: what each running bridge of a data directory writes
//! into `DIR/bridges/bridge-<pid>-<n>.json`, and what `libqueue stats DIR`
//! reads back (format and guarantees: `docs/bridges.md`, "The bridges file").
//!
//! Built without the `bridge` feature too, so the command can read files
//! written by programs that have it. The format is a flat JSON object (no
//! floats, no negative numbers, at most [`MAX_FILE`] bytes); the reader here
//! is a small bounded one, and an unknown `version` is a clear error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The format version written, and the only one read.
pub const VERSION: u64 = 1;

/// The largest bridges file read (a larger one is an error, not read).
pub const MAX_FILE: u64 = 1 << 20;

/// One route of a bridge, as written in its file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteRecord {
    /// `"out"` (a local queue forwarded) or `"in"` (a remote source received).
    pub direction: String,
    /// The local queue, `namespace/queue`.
    pub queue: String,
    /// The remote subject (or exchange/queue), and for inbound the durable
    /// consumer after a space.
    pub remote: String,
    /// Waiting for another process's claim on this queue or source.
    pub standby: bool,
}

/// One bridge's file: its configuration (without credentials) and its
/// counters and health when last written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeRecord {
    /// The remote's kind: the URL's scheme (`nats`, `amqp`, …).
    pub kind: String,
    /// The remote's URL(s), user and password left out.
    pub url: String,
    /// The identity in the bridge's message ids.
    pub identity: String,
    /// The process running the bridge.
    pub pid: u32,
    /// Milliseconds since the Unix epoch: the bridge's start, the last write.
    pub started_ms: u64,
    /// See `started_ms`.
    pub updated_ms: u64,
    /// The routes.
    pub routes: Vec<RouteRecord>,
    /// Connected to the remote when last written.
    pub connected: bool,
    /// The counters of `BridgeStats` of the same names.
    pub forwarded: u64,
    /// See `forwarded`.
    pub received: u64,
    /// See `forwarded`.
    pub pending_outbound: u64,
    /// See `forwarded`.
    pub pending_inbound: u64,
    /// See `forwarded`.
    pub retries: u64,
    /// See `forwarded`.
    pub duplicates: u64,
    /// See `forwarded`.
    pub dead_lettered: u64,
    /// Routes waiting as standby.
    pub standby: u64,
    /// The last error, and when (ms since the epoch) it happened.
    pub last_error: Option<String>,
    /// See `last_error`.
    pub last_error_ms: Option<u64>,
    /// When the current run of failures began (ms since the epoch).
    pub error_since_ms: Option<u64>,
}

/// A bridges file found in a data directory.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Listed {
    /// Its path.
    pub path: PathBuf,
    /// Its contents, or why they could not be read.
    pub record: Result<BridgeRecord, String>,
    /// Whether its process is alive (false: a stale file left by a process
    /// that died without stopping its bridge).
    pub alive: bool,
}

/// The folder of the bridges files (and claim locks) of a data directory.
pub fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join("bridges")
}

/// The bridges files of `data_dir`, sorted by name (none if there is no
/// `bridges` folder).
pub fn list(data_dir: &Path) -> Vec<Listed> {
    let Ok(entries) = std::fs::read_dir(folder(data_dir)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("bridge-"))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let record = read(&path);
            let alive = record.as_ref().is_ok_and(|r| pid_alive(r.pid));
            Listed {
                path,
                record,
                alive,
            }
        })
        .collect()
}

/// Reads one bridges file.
pub fn read(path: &Path) -> Result<BridgeRecord, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    BridgeRecord::from_json(&text)
}

/// Whether process `pid` exists (it may belong to another user).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `url` (comma-separated URLs) with any `user:password@` left out.
pub fn strip_credentials(url: &str) -> String {
    url.split(',')
        .map(|u| {
            let u = u.trim();
            let (scheme, rest) = match u.split_once("://") {
                Some((s, r)) => (Some(s), r),
                None => (None, u),
            };
            let host_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..host_end].rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            match scheme {
                Some(s) => format!("{s}://{rest}"),
                None => rest.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes `text` to `path` atomically: a temporary file beside it, then a
/// rename, so a reader sees the old file or the new one, never a part.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

impl BridgeRecord {
    /// The file's text (JSON, one object, a trailing newline).
    pub fn to_json(&self) -> String {
        let mut o = String::from("{");
        let _ = write!(o, "\"version\":{VERSION}");
        for (k, v) in [
            ("kind", &self.kind),
            ("url", &self.url),
            ("identity", &self.identity),
        ] {
            let _ = write!(o, ",\"{k}\":{}", quote(v));
        }
        for (k, v) in [
            ("pid", u64::from(self.pid)),
            ("started_ms", self.started_ms),
            ("updated_ms", self.updated_ms),
        ] {
            let _ = write!(o, ",\"{k}\":{v}");
        }
        o.push_str(",\"routes\":[");
        for (i, r) in self.routes.iter().enumerate() {
            let _ = write!(
                o,
                "{}{{\"direction\":{},\"queue\":{},\"remote\":{},\"standby\":{}}}",
                if i == 0 { "" } else { "," },
                quote(&r.direction),
                quote(&r.queue),
                quote(&r.remote),
                r.standby
            );
        }
        let _ = write!(o, "],\"connected\":{}", self.connected);
        for (k, v) in self.counters() {
            let _ = write!(o, ",\"{k}\":{v}");
        }
        let text = self.last_error.as_deref().map(quote);
        for (k, v) in [
            ("last_error", text),
            ("last_error_ms", self.last_error_ms.map(|n| n.to_string())),
            ("error_since_ms", self.error_since_ms.map(|n| n.to_string())),
        ] {
            let _ = write!(o, ",\"{k}\":{}", v.as_deref().unwrap_or("null"));
        }
        o.push_str("}\n");
        o
    }

    fn counters(&self) -> [(&'static str, u64); 8] {
        [
            ("forwarded", self.forwarded),
            ("received", self.received),
            ("pending_outbound", self.pending_outbound),
            ("pending_inbound", self.pending_inbound),
            ("retries", self.retries),
            ("duplicates", self.duplicates),
            ("dead_lettered", self.dead_lettered),
            ("standby", self.standby),
        ]
    }

    /// Parses a file's text. Unknown fields are ignored (later versions may
    /// add some); a missing or unknown `version`, a missing field, or a
    /// field of the wrong type is an error naming it.
    pub fn from_json(text: &str) -> Result<BridgeRecord, String> {
        let v = Parser {
            s: text.as_bytes(),
            i: 0,
        }
        .document()?;
        let o = Obj(v.as_obj().ok_or("not a JSON object")?);
        match o.get("version") {
            Some(Value::Num(n)) if *n == VERSION => {}
            Some(Value::Num(n)) => {
                return Err(format!("version {n} (this reader knows {VERSION})"))
            }
            _ => return Err("no version".into()),
        }
        let mut routes = Vec::new();
        for r in o.arr("routes")? {
            let r = Obj(r.as_obj().ok_or("a route is not an object")?);
            routes.push(RouteRecord {
                direction: r.str("direction")?,
                queue: r.str("queue")?,
                remote: r.str("remote")?,
                standby: r.bool("standby")?,
            });
        }
        Ok(BridgeRecord {
            kind: o.str("kind")?,
            url: o.str("url")?,
            identity: o.str("identity")?,
            pid: u32::try_from(o.num("pid")?).map_err(|_| "pid out of range")?,
            started_ms: o.num("started_ms")?,
            updated_ms: o.num("updated_ms")?,
            routes,
            connected: o.bool("connected")?,
            forwarded: o.num("forwarded")?,
            received: o.num("received")?,
            pending_outbound: o.num("pending_outbound")?,
            pending_inbound: o.num("pending_inbound")?,
            retries: o.num("retries")?,
            duplicates: o.num("duplicates")?,
            dead_lettered: o.num("dead_lettered")?,
            standby: o.num("standby")?,
            last_error: o.opt_str("last_error")?,
            last_error_ms: o.opt_num("last_error_ms")?,
            error_since_ms: o.opt_num("error_since_ms")?,
        })
    }
}

fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON value of the subset the format uses.
#[derive(Debug)]
enum Value {
    Null,
    Bool(bool),
    Num(u64),
    Str(String),
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

impl Value {
    fn as_obj(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Obj(o) => Some(o),
            _ => None,
        }
    }
}

struct Obj<'a>(&'a [(String, Value)]);

impl Obj<'_> {
    fn get(&self, k: &str) -> Option<&Value> {
        self.0.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v)
    }
    fn str(&self, k: &str) -> Result<String, String> {
        match self.get(k) {
            Some(Value::Str(s)) => Ok(s.clone()),
            _ => Err(format!("{k}: expected a string")),
        }
    }
    fn opt_str(&self, k: &str) -> Result<Option<String>, String> {
        match self.get(k) {
            None | Some(Value::Null) => Ok(None),
            _ => self.str(k).map(Some),
        }
    }
    fn num(&self, k: &str) -> Result<u64, String> {
        match self.get(k) {
            Some(Value::Num(n)) => Ok(*n),
            _ => Err(format!("{k}: expected a number")),
        }
    }
    fn opt_num(&self, k: &str) -> Result<Option<u64>, String> {
        match self.get(k) {
            None | Some(Value::Null) => Ok(None),
            _ => self.num(k).map(Some),
        }
    }
    fn bool(&self, k: &str) -> Result<bool, String> {
        match self.get(k) {
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(format!("{k}: expected true or false")),
        }
    }
    fn arr(&self, k: &str) -> Result<&[Value], String> {
        match self.get(k) {
            Some(Value::Arr(a)) => Ok(a),
            _ => Err(format!("{k}: expected an array")),
        }
    }
}

/// Nesting allowed (the format uses 2: the object, its routes' objects).
const MAX_DEPTH: usize = 4;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn document(mut self) -> Result<Value, String> {
        let v = self.value(0)?;
        self.ws();
        if self.i != self.s.len() {
            return Err(self.err("trailing characters"));
        }
        Ok(v)
    }

    fn err(&self, what: &str) -> String {
        format!("malformed JSON at byte {}: {what}", self.i)
    }

    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, w: &str, v: Value) -> Result<Value, String> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(self.err("unknown word"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        self.ws();
        match self.s.get(self.i) {
            None => Err(self.err("unexpected end")),
            Some(b'n') => self.word("null", Value::Null),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::Str),
            Some(b'0'..=b'9') => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Value::Num)
                    .ok_or_else(|| self.err("number out of range"))
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                if self.eat(b']') {
                    return Ok(Value::Arr(a));
                }
                loop {
                    a.push(self.value(depth + 1)?);
                    if self.eat(b']') {
                        return Ok(Value::Arr(a));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected , or ]"));
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut o = Vec::new();
                if self.eat(b'}') {
                    return Ok(Value::Obj(o));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a field name"));
                    }
                    let k = self.string()?;
                    if !self.eat(b':') {
                        return Err(self.err("expected :"));
                    }
                    o.push((k, self.value(depth + 1)?));
                    if self.eat(b'}') {
                        return Ok(Value::Obj(o));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected , or }"));
                    }
                }
            }
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    /// A string; `self.i` is at its opening quote.
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|_| self.err("not UTF-8")),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !self.s[self.i..].starts_with(b"\\u") {
                                    return Err(self.err("lone surrogate"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("lone surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or_else(|| self.err("bad \\u escape"))?
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b if b < 0x20 => return Err(self.err("control character in a string")),
                b => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BridgeRecord {
        BridgeRecord {
            kind: "nats".into(),
            url: "nats://127.0.0.1:4222".into(),
            identity: "00ff".into(),
            pid: 42,
            started_ms: 1,
            updated_ms: 2,
            routes: vec![
                RouteRecord {
                    direction: "out".into(),
                    queue: "app/jobs".into(),
                    remote: "jobs.created".into(),
                    standby: true,
                },
                RouteRecord {
                    direction: "in".into(),
                    queue: "default/inbox".into(),
                    remote: "in.> lq-default-inbox".into(),
                    standby: false,
                },
            ],
            connected: true,
            forwarded: 3,
            received: 4,
            pending_outbound: 5,
            pending_inbound: 6,
            retries: 7,
            duplicates: 8,
            dead_lettered: 9,
            standby: 1,
            last_error: Some("a \"quoted\"\n\u{1} é 😀 error".into()),
            last_error_ms: Some(10),
            error_since_ms: None,
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let text = r.to_json();
        assert_eq!(BridgeRecord::from_json(&text), Ok(r));
        // Escapes a writer of another language may use.
        let text = text.replace("é", "\\u00e9").replace("😀", "\\ud83d\\ude00");
        assert_eq!(BridgeRecord::from_json(&text), Ok(sample()));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let text = sample().to_json();
        for cut in 0..text.len() - 1 {
            assert!(
                BridgeRecord::from_json(&String::from_utf8_lossy(&text.as_bytes()[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        for (i, b) in text.bytes().enumerate() {
            for x in [b'"', b'\\', b'{', b'[', b'9', 0xff] {
                let mut bytes = text.as_bytes().to_vec();
                if bytes[i] == x {
                    continue;
                }
                bytes[i] = x;
                let _ = BridgeRecord::from_json(&String::from_utf8_lossy(&bytes));
            }
            let _ = b;
        }
        let v2 = text.replace("\"version\":1", "\"version\":2");
        assert!(BridgeRecord::from_json(&v2)
            .unwrap_err()
            .contains("version 2"));
        let deep = "[".repeat(100_000);
        assert!(BridgeRecord::from_json(&deep).is_err());
        assert!(BridgeRecord::from_json("{\"version\":99999999999999999999999}").is_err());
    }

    #[test]
    fn credentials_are_left_out() {
        assert_eq!(
            strip_credentials("nats://u:p@h:4222, tls://tok@h2:1/x@y,h3:4"),
            "nats://h:4222,tls://h2:1/x@y,h3:4"
        );
    }
}
