//! `libqueue`: look into a data directory without opening it for writing.
//!
//! ```text
//! libqueue verify DIR    replay as an open would (CRCs, commit marks, gaps);
//!                        exit 1 on damage
//! libqueue stats DIR     the process hosting DIR, if one does (its pid, the
//!                        processes attached to it, takeovers, dropped
//!                        clients: asked over its socket, never attaching);
//!                        the bridges running on DIR (from their files in
//!                        DIR/bridges/; a file whose process died is stale);
//!                        then queues and their unacked persistent messages,
//!                        namespaces and their quotas, topics and their
//!                        subscriptions (from the journal, read-only)
//! libqueue inspect DIR   dump every record
//! ```

use libqueue::bridge_file;
use libqueue::store::journal;
use libqueue::HostInfo;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DD HH:MM:SS UTC` of seconds since the epoch.
fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The host section of `stats`: asked over the directory's socket (the
/// command never attaches, so it never becomes the directory's host).
fn print_host(dir: &Path) {
    match HostInfo::probe(dir) {
        Ok(None) => println!("host: none (no process has {} open)", dir.display()),
        Err(e) => println!("host: unreachable ({e})"),
        Ok(Some(h)) => {
            println!(
                "host: pid {}, {} takeover{}, {} client{} dropped",
                h.pid,
                h.takeovers,
                if h.takeovers == 1 { "" } else { "s" },
                h.dropped,
                if h.dropped == 1 { "" } else { "s" },
            );
            println!(
                "attached: {} process{}",
                h.clients.len(),
                if h.clients.len() == 1 { "" } else { "es" }
            );
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            for c in &h.clients {
                println!(
                    "  pid {:<8} uid {:<6} since {} ({} s)  leases {}",
                    c.pid,
                    c.uid,
                    utc(c.since),
                    now.saturating_sub(c.since),
                    c.leases
                );
            }
        }
    }
}

/// The bridges section of `stats`: the files running bridges write.
fn print_bridges(dir: &Path) {
    let listed = bridge_file::list(dir);
    if listed.is_empty() {
        println!("bridges: none");
        return;
    }
    println!("bridges: {}", listed.len());
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for l in &listed {
        let name = l
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let b = match &l.record {
            Ok(b) => b,
            Err(e) => {
                println!("  {name}: unreadable ({e})");
                continue;
            }
        };
        let state = if !l.alive {
            "STALE: its process is gone".to_string()
        } else if b.standby as usize == b.routes.len() && b.standby > 0 {
            "standby".to_string()
        } else if b.connected {
            "connected".to_string()
        } else {
            "disconnected".to_string()
        };
        println!(
            "  {} {}  pid {}  identity {}  {state}  (written {} ms ago)",
            b.kind,
            b.url,
            b.pid,
            b.identity,
            now_ms.saturating_sub(b.updated_ms)
        );
        for r in &b.routes {
            let (from, to) = if r.direction == "out" {
                (r.queue.as_str(), r.remote.as_str())
            } else {
                (r.remote.as_str(), r.queue.as_str())
            };
            println!(
                "    {:<3} {from} -> {to}{}",
                r.direction,
                if r.standby { "  (standby)" } else { "" }
            );
        }
        println!(
            "    forwarded {}  received {}  pending out {} in {}  retries {}  duplicates suppressed {}  dead-lettered {}  standby {}",
            b.forwarded,
            b.received,
            b.pending_outbound,
            b.pending_inbound,
            b.retries,
            b.duplicates,
            b.dead_lettered,
            b.standby
        );
        if let Some(e) = &b.last_error {
            let at = b
                .last_error_ms
                .map_or_else(String::new, |t| format!(" at {}", utc(t / 1000)));
            let since = b.error_since_ms.map_or_else(
                || " (recovered since)".to_string(),
                |t| format!(" (failing since {})", utc(t / 1000)),
            );
            println!("    last error{at}{since}: {e}");
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: libqueue verify|stats|inspect DIR");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cmd, dir] = args.as_slice() else {
        return usage();
    };
    let dir = Path::new(dir);
    let result = match cmd.as_str() {
        "verify" => journal::inspect(dir).map(|i| {
            let r = &i.report;
            println!(
                "{} records, {} queues, {} messages; {} bytes cut, {} segments damaged",
                r.records_read, r.queues, r.messages_recovered, r.bytes_cut, r.segments_damaged
            );
            for d in &r.damage {
                println!("DAMAGE: {d}");
            }
            if r.damage.is_empty() && r.segments_damaged == 0 {
                println!("OK");
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
        "stats" => journal::inspect(dir).map(|i| {
            print_host(dir);
            print_bridges(dir);
            println!("{:<50} {:>10} {:>12}", "queue", "messages", "bytes");
            for (q, n, b) in &i.queues {
                println!("{q:<50} {n:>10} {b:>12}");
            }
            for (ns, quotas) in &i.namespaces {
                println!("namespace {ns}: {}", journal::quotas_text(quotas));
            }
            for (t, subs) in &i.topics {
                let subs: Vec<String> = subs
                    .iter()
                    .map(|(q, f)| format!("{q} ({})", journal::filter_text(f)))
                    .collect();
                let subs = if subs.is_empty() {
                    "no subscription".to_string()
                } else {
                    subs.join(", ")
                };
                println!("topic {t}: {subs}");
            }
            ExitCode::SUCCESS
        }),
        "inspect" => {
            let mut out = std::io::stdout().lock();
            journal::dump(dir, &mut out).map(|n| {
                eprintln!("{n} records");
                ExitCode::SUCCESS
            })
        }
        _ => return usage(),
    };
    result.unwrap_or_else(|e| {
        eprintln!("libqueue: {e}");
        ExitCode::from(2)
    })
}
