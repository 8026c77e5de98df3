//! Helpers the journal tests share (journal_units.rs, journal_defs.rs): a small
//! data directory's options, its segment files, and copies of it cut at a byte
//! (what a process killed while writing that byte leaves).

#![allow(dead_code)] // each test binary uses its own subset

use libqueue::BrokerOptions;
use std::fs;
use std::path::{Path, PathBuf};

pub fn opts(dir: &Path) -> BrokerOptions {
    BrokerOptions::new().data_dir(dir).segment_size(1 << 20)
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "lqj"))
        .collect();
    v.sort();
    v
}

/// The one segment of `dir`, and where its written bytes end (8-aligned).
pub fn only_segment(dir: &Path) -> (PathBuf, usize) {
    let segs = segments(dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let buf = fs::read(&segs[0]).unwrap();
    let end = buf.iter().rposition(|b| *b != 0).map_or(64, |p| p + 1);
    (segs[0].clone(), (end + 7) & !7)
}

/// A copy of `src` whose segment `seg` has zeros from byte `at` on (what a
/// process killed while writing byte `at` leaves).
pub fn cut_copy(src: &Path, seg: &Path, at: usize) -> tempfile::TempDir {
    let dst = tempfile::tempdir().unwrap();
    for p in segments(src) {
        let mut buf = fs::read(&p).unwrap();
        if p == seg {
            buf[at..].fill(0);
        }
        fs::write(dst.path().join(p.file_name().unwrap()), buf).unwrap();
    }
    dst
}
