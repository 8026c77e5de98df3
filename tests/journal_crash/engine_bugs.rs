//! Engine bugs found by these tests (fixed since; kept as regressions).

use super::*;

/// Recovery treats an all-zero record header as the clean end of a segment
/// without looking further, and then goes on replaying the next segments. A
/// zeroed page that starts exactly at a record boundary (or in a record's
/// padding) in a middle segment therefore loses the rest of that segment
/// silently — no damage in the report — while later segments are still
/// replayed: the recovered messages are no longer a prefix of the journal.
#[test]
fn zeroed_page_at_a_record_boundary_in_a_middle_segment() {
    let dir = tempfile::tempdir().unwrap();
    let l = fill(dir.path(), N);
    let si = 1;
    let mut rng = SmallRng::seed_from_u64(1);
    let (p, i) = pick_page(&l[si], &mut rng, false);
    zero(&l[si].path, p, 4096);
    let ctx = format!("segment {si} of {}, page at record boundary {p}", l.len());
    let (report, got) = reopen_and_collect(dir.path(), &ctx);
    let want = count_before(&l, si, i);
    let beyond = got.iter().filter(|b| **b >= want).count();
    assert!(
        damaged(&report) && beyond == 0,
        "{ctx}: the records from byte {p} to the end of segment {si} are lost \
         ({} of {N} messages recovered), {beyond} messages from after them came back \
         and the report shows no damage: {report:?}",
        got.len()
    );
    check_prefix(dir.path(), &ctx, &report, &got, want);
}

/// The same root cause at the end of the journal: a segment cut inside a record
/// header (fewer than 12 bytes of it left) reads as a clean end, so the lost
/// record is not reported (`bytes_cut` 0, no `damage`).
#[test]
fn truncation_inside_a_record_header_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let l = fill(dir.path(), N);
    let si = l.len() - 1;
    let last = &l[si];
    let i = last.recs.len() / 2;
    let at = last.recs[i].start + 6;
    fs::OpenOptions::new()
        .write(true)
        .open(&last.path)
        .unwrap()
        .set_len(at as u64)
        .unwrap();
    let ctx = format!("last segment cut at byte {at}, inside record {i}'s header");
    let (report, got) = reopen_and_collect(dir.path(), &ctx);
    assert!(damaged(&report), "{ctx}: damage not reported: {report:?}");
    check_prefix(dir.path(), &ctx, &report, &got, count_before(&l, si, i));
}

/// Every healthy directory starts with a checkpoint segment (each open writes
/// one first and removes what came before it). When that first segment is
/// missing, recovery replays the rest as if nothing were wrong: the messages it
/// held (and the queue definition) are lost and the report is clean.
#[test]
fn deleted_first_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let l = fill(dir.path(), N);
    fs::remove_file(&l[0].path).unwrap();
    let ctx = "first segment deleted";
    let (report, got) = reopen_and_collect(dir.path(), ctx);
    assert!(
        damaged(&report),
        "{ctx}: damage not reported; {} of {N} messages recovered: {report:?}",
        got.len()
    );
}

/// A stray file named like a segment with a huge number: new segment numbers
/// continue after it and wrap past u64::MAX. In a debug build the roll panics
/// (`attempt to add with overflow`, in `Writer::roll`, from a send); in a release
/// build the numbers wrap to 0, the wrapped segments sort before the checkpoint,
/// and the next open fails for good (`cannot create seg-0000000000000000.lqj:
/// File exists`), so the directory can no longer be opened.
#[test]
fn stray_segment_with_a_huge_number() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("seg-fffffffffffffffe.lqj"), b"garbage").unwrap();
    let d = dir.path().to_path_buf();
    within("open and send", Duration::from_secs(30), move || {
        let b = Broker::open(opts(&d)).expect("open");
        let q = b.namespace(NS).unwrap().queue(QUEUE).unwrap();
        for i in 0..N {
            q.send(Message::new(i.to_le_bytes().to_vec()).persistent(true))
                .expect("send");
        }
    });
    let (report, got) = reopen_and_collect(dir.path(), "reopen after the wrap");
    check_prefix(dir.path(), "reopen after the wrap", &report, &got, N);
}

/// Segment names are parsed leniently (`from_str_radix` of whatever is between
/// `seg-` and `.lqj`: short, long, `+`-prefixed), so a stray `seg-2.lqj` is taken
/// for segment 2 beside the real `seg-0000000000000002.lqj`: recovery reports a
/// nonsensical gap ("segments 3 to 1 are missing") or a bad header, and cuts
/// everything from there (of 4000 messages, 816 or 1634 come back; the real
/// segments go to `damaged/`).
#[test]
fn non_canonical_segment_names_are_not_segments() {
    for name in ["seg-2.lqj", "seg-+2.lqj", "seg-00000000000000002.lqj"] {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), N);
        fs::write(dir.path().join(name), b"garbage").unwrap();
        let (report, got) = reopen_and_collect(dir.path(), name);
        check_prefix(dir.path(), name, &report, &got, N);
    }
}
