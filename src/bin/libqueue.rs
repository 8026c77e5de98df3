//! `libqueue`: look into a data directory without opening it for writing.
//!
//! ```text
//! libqueue verify DIR    replay as an open would (CRCs, commit marks, gaps);
//!                        exit 1 on damage
//! libqueue stats DIR     queues and their unacked persistent messages,
//!                        namespaces and their quotas, topics and their
//!                        subscriptions
//! libqueue inspect DIR   dump every record
//! ```

use libqueue::store::journal;
use std::path::Path;
use std::process::ExitCode;

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
