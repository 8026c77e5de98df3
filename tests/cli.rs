//! The `libqueue` command: verify, stats and inspect a data directory, read-only
//! (also while a broker has it open).

use libqueue::*;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_libqueue"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn verify_stats_inspect_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let q = b.namespace("t").unwrap().queue("jobs").unwrap();
    for i in 0..10 {
        q.send(
            Message::new(format!("job {i}"))
                .name("run")
                .persistent(true),
        )
        .unwrap();
    }
    q.try_receive().unwrap().unwrap().ack().unwrap();
    b.flush().unwrap();

    // Read-only: works while the broker holds the lock.
    let (code, out) = run(&["verify", d]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK") && out.contains("9 messages"), "{out}");
    let (code, out) = run(&["stats", d]);
    assert_eq!(code, 0);
    assert!(out.contains("t/jobs") && out.contains(" 9 "), "{out}");
    let (code, out) = run(&["inspect", d]);
    assert_eq!(code, 0);
    assert!(out.contains("define t/jobs"), "{out}");
    assert_eq!(out.matches("enqueue t/jobs").count(), 10, "{out}");
    assert!(out.contains("remove t/jobs"), "{out}");
    drop(q);
    drop(b);

    // Flip a byte inside the records: verify reports damage and exits 1.
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "lqj"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 40] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    let (code, out) = run(&["verify", d]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DAMAGE"), "{out}");

    assert_eq!(run(&["bogus", d]).0, 2);
    assert_eq!(run(&["verify"]).0, 2);
}
