//! The journal's definition records (namespaces, topics, subscriptions,
//! unsubscribes; format 2, skippable types 0x81 to 0x84), at the byte level:
//!
//! - a definition whose write was cut at any byte comes back whole or not at
//!   all, and the journal opens every time;
//! - a record of a skippable type this build does not know (a later build's)
//!   is skipped, not called damage, and the definitions around it are kept;
//! - a journal of a build without definition records (types 1 to 8 only)
//!   opens; its namespaces come back with the default quotas and are journaled
//!   from then on;
//! - declaring the same definitions again after a reopen writes nothing;
//! - a definition the engine cannot re-create (a name that is not valid) is
//!   left out and reported, and the directory opens;
//! - `libqueue inspect` and `libqueue stats` show them.
//!
//! The cut-at-every-byte test simulates a SIGKILL during a write, as in
//! `journal_units.rs`; `journal_crash/` kills real processes while they
//! define and subscribe.

use libqueue::store::journal::{fuzz, inspect};
use libqueue::*;
use std::fs;
use std::path::Path;
use std::process::Command;

#[path = "common/segments.rs"]
mod segments;
use segments::{cut_copy, only_segment, opts, segments};

/// Where the non-zero bytes of the one segment of `dir` end: a cut anywhere
/// from there on leaves the same bytes.
fn written_end(dir: &Path) -> usize {
    let segs = segments(dir);
    let buf = fs::read(&segs[0]).unwrap();
    buf.iter().rposition(|b| *b != 0).map_or(64, |p| p + 1)
}

/// What the broker has of namespace `n`: its quotas, topic `t`'s
/// subscriptions with their filters.
fn defs(b: &Broker) -> (Option<Quotas>, Vec<(String, Filter)>) {
    let Ok(ns) = b.get_namespace("n") else {
        return (None, Vec::new());
    };
    let subs = if ns.list_topics().contains(&"t".to_string()) {
        let t = ns.topic("t").unwrap();
        t.subscriptions()
            .into_iter()
            .map(|q| {
                let f = t.filter(&q).unwrap();
                (q, f)
            })
            .collect()
    } else {
        Vec::new()
    };
    (Some(ns.quotas().clone()), subs)
}

#[test]
fn a_definition_cut_at_any_byte_is_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let quotas = Quotas::default().max_messages(7).max_queues(9);
    let steps: Vec<usize>;
    {
        let b = Broker::open(opts(dir.path())).unwrap();
        let mut ends = vec![written_end(dir.path())];
        let ns = b.create_namespace("n", quotas.clone()).unwrap();
        ends.push(written_end(dir.path()));
        let t = ns.topic("t").unwrap();
        ends.push(written_end(dir.path()));
        ns.queue("s").unwrap();
        ends.push(written_end(dir.path()));
        t.subscribe("s", Filter::header("k", b"v\x00".to_vec()))
            .unwrap();
        ends.push(written_end(dir.path()));
        t.unsubscribe("s").unwrap();
        ends.push(written_end(dir.path()));
        steps = ends;
        b.close();
    }
    let (seg, end) = only_segment(dir.path());
    assert_eq!(written_end(dir.path()), *steps.last().unwrap());
    let sub = vec![("s".to_string(), Filter::header("k", b"v\x00".to_vec()))];
    // What a cut at `at` may bring back: the state after the last record
    // that ends at or before it.
    let want = |at: usize| -> (Option<Quotas>, Vec<(String, Filter)>) {
        let done = steps.iter().filter(|e| **e <= at).count() - 1;
        match done {
            0 => (None, Vec::new()),
            1..=3 => (Some(quotas.clone()), Vec::new()),
            4 => (Some(quotas.clone()), sub.clone()),
            _ => (Some(quotas.clone()), Vec::new()),
        }
    };
    let mut cuts = 0;
    for at in steps[0]..=end {
        let d = cut_copy(dir.path(), &seg, at);
        let b = Broker::open(opts(d.path())).expect("a cut journal opens");
        assert_eq!(defs(&b), want(at), "cut at byte {at}");
        b.close();
        // And opens again, the same.
        let b = Broker::open(opts(d.path())).unwrap();
        assert_eq!(defs(&b), want(at), "cut at byte {at}, second open");
        cuts += 1;
    }
    assert!(cuts > 100, "{cuts}");
}

#[test]
fn an_unknown_skippable_record_is_skipped() {
    let src = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(opts(src.path())).unwrap();
        let ns = b
            .create_namespace("n", Quotas::default().max_bytes(1000))
            .unwrap();
        ns.topic("t").unwrap().subscribe("s", Filter::All).unwrap();
        b.close();
    }
    let (seg, _) = only_segment(src.path());
    let recs = fuzz::records(&fs::read(&seg).unwrap());
    // A later build's record type 0x9F, among ours.
    let at = recs
        .iter()
        .position(|r| r.0 == 0x82)
        .expect("a topic record");
    let mut with: Vec<(u8, &[u8])> = recs.iter().map(|(k, p)| (*k, &p[..])).collect();
    with.insert(at, (0x9F, b"from a later build"));
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("seg-0000000000000001.lqj"),
        fuzz::segment_file(1, 2, &with, true),
    )
    .unwrap();
    let b = Broker::open(opts(dir.path())).unwrap();
    let r = b.recovery_report().unwrap();
    assert!(r.damage.is_empty(), "{r:?}");
    assert_eq!(
        defs(&b),
        (
            Some(Quotas::default().max_bytes(1000)),
            vec![("s".to_string(), Filter::All)]
        )
    );
    // An unknown type without the skippable bit is damage.
    drop(b);
    with[at].0 = 0x1F;
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("seg-0000000000000001.lqj"),
        fuzz::segment_file(1, 2, &with, true),
    )
    .unwrap();
    let b = Broker::open(opts(dir.path())).unwrap();
    assert!(!b.recovery_report().unwrap().damage.is_empty());
}

#[test]
fn a_journal_without_definition_records_opens() {
    let src = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(opts(src.path())).unwrap();
        let ns = b
            .create_namespace("n", Quotas::default().max_messages(3))
            .unwrap();
        ns.queue("q")
            .unwrap()
            .send(Message::new("m").persistent(true))
            .unwrap();
        ns.topic("t").unwrap().subscribe("q", Filter::All).unwrap();
        b.close();
    }
    let (seg, _) = only_segment(src.path());
    let recs: Vec<(u8, Vec<u8>)> = fuzz::records(&fs::read(&seg).unwrap())
        .into_iter()
        .filter(|r| r.0 < 0x80)
        .collect();
    let borrowed: Vec<(u8, &[u8])> = recs.iter().map(|(k, p)| (*k, &p[..])).collect();
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("seg-0000000000000001.lqj"),
        fuzz::segment_file(1, 2, &borrowed, true),
    )
    .unwrap();
    {
        let b = Broker::open(opts(dir.path())).unwrap();
        assert!(b.recovery_report().unwrap().damage.is_empty());
        // The queue and its message are back; the namespace with the defaults.
        assert_eq!(defs(&b), (Some(Quotas::default()), Vec::new()));
        let q = b.namespace("n").unwrap().get_queue("q").unwrap();
        assert_eq!(q.try_receive().unwrap().unwrap().body(), b"m");
        b.close();
    }
    // Journaled from then on.
    let i = inspect(dir.path()).unwrap();
    assert!(
        i.namespaces
            .iter()
            .any(|(n, q)| n == "n" && *q == Quotas::default()),
        "{:?}",
        i.namespaces
    );
}

#[test]
fn declaring_again_after_a_reopen_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let declare = |b: &Broker| {
        let ns = b
            .create_namespace("n", Quotas::default().max_messages(5))
            .unwrap();
        let t = ns.topic("t").unwrap();
        t.subscribe("a", Filter::name("x")).unwrap();
        t.subscribe("b", Filter::execution_id("e")).unwrap();
    };
    let b = Broker::open(opts(dir.path())).unwrap();
    declare(&b);
    b.close();
    let (_, end) = only_segment(dir.path());
    for _ in 0..3 {
        let b = Broker::open(opts(dir.path())).unwrap();
        declare(&b);
        b.close();
        assert_eq!(only_segment(dir.path()).1, end, "a re-declaration wrote");
    }
    let i = inspect(dir.path()).unwrap();
    assert_eq!(i.namespaces.len(), 2, "{:?}", i.namespaces);
    assert_eq!(
        i.topics,
        vec![(
            "n/t".to_string(),
            vec![
                ("a".to_string(), Filter::name("x")),
                ("b".to_string(), Filter::execution_id("e"))
            ]
        )]
    );
}

#[test]
fn cli_inspect_and_stats_show_definitions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(opts(dir.path())).unwrap();
        let ns = b
            .create_namespace("tenant", Quotas::default().max_messages(5))
            .unwrap();
        let t = ns.topic("events").unwrap();
        t.subscribe("sub1", Filter::All).unwrap();
        t.subscribe("sub2", Filter::name("create")).unwrap();
        t.subscribe("sub3", Filter::header("region", "eu")).unwrap();
        t.unsubscribe("sub3").unwrap();
        b.close();
    }
    let run = |cmd: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_libqueue"))
            .args([cmd, dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let out = run("inspect");
    for want in [
        "namespace tenant [max_queues unlimited, max_messages 5,",
        "topic tenant/events",
        "subscribe tenant/sub1 to topic events filter all",
        "subscribe tenant/sub2 to topic events filter name=\"create\"",
        "subscribe tenant/sub3 to topic events filter header \"region\"=\"eu\"",
        "unsubscribe tenant/sub3 from topic events",
    ] {
        assert!(out.contains(want), "inspect lacks {want:?}:\n{out}");
    }
    let out = run("stats");
    for want in [
        "namespace tenant: max_queues unlimited, max_messages 5,",
        "topic tenant/events: sub1 (all), sub2 (name=\"create\")",
    ] {
        assert!(out.contains(want), "stats lacks {want:?}:\n{out}");
    }
    assert!(!out.contains("sub3 ("), "unsubscribed, still shown:\n{out}");
}

fn enc_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A `NamespaceDefined` payload: the name, then quotas with `max_messages`.
fn ns_record(name: &str, max_messages: u64) -> Vec<u8> {
    let mut p = Vec::new();
    enc_str(&mut p, name);
    p.push(2);
    for v in [0, max_messages, 0, 1 << 20] {
        p.extend_from_slice(&u64::to_le_bytes(v));
    }
    p
}

/// Definitions the engine cannot re-create (names that are not valid: a
/// journal written by something else) are left out and reported; the rest
/// comes back and the directory opens.
#[test]
fn definitions_that_cannot_be_restored_are_left_out_and_reported() {
    let mut topic = Vec::new();
    enc_str(&mut topic, "n");
    enc_str(&mut topic, "bad topic");
    let mut good_topic = Vec::new();
    enc_str(&mut good_topic, "n");
    enc_str(&mut good_topic, "t");
    let sub = |queue: &str| {
        let mut p = good_topic.clone();
        enc_str(&mut p, queue);
        p.push(1);
        enc_str(&mut p, "x");
        p
    };
    let (bad_sub, good_sub) = (sub("bad queue"), sub("q"));
    let records: Vec<(u8, Vec<u8>)> = vec![
        (0x81, ns_record("bad name", 1)),
        (0x81, ns_record("n", 4)),
        (0x82, topic),
        (0x82, good_topic.clone()),
        (0x83, bad_sub),
        (0x83, good_sub),
        (5, Vec::new()),
    ];
    let borrowed: Vec<(u8, &[u8])> = records.iter().map(|(k, p)| (*k, &p[..])).collect();
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("seg-0000000000000001.lqj"),
        fuzz::segment_file(1, 2, &borrowed, true),
    )
    .unwrap();
    let b = Broker::open(opts(dir.path())).expect("opens");
    let damage = b.recovery_report().unwrap().damage.clone();
    assert_eq!(damage.len(), 3, "{damage:?}");
    assert!(
        damage[0].contains("namespace bad name not restored"),
        "{damage:?}"
    );
    assert!(
        damage.iter().any(|d| d.contains("topic n/bad topic")),
        "{damage:?}"
    );
    assert!(
        damage.iter().any(|d| d.contains("n/bad queue")),
        "{damage:?}"
    );
    assert_eq!(b.namespaces(), vec!["default", "n"]);
    assert_eq!(
        defs(&b),
        (
            Some(Quotas::default().max_messages(4).max_message_size(1 << 20)),
            vec![("q".to_string(), Filter::name("x"))]
        )
    );
}
