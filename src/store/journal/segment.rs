//! Segment files and the data directory: segment names, the directory's write
//! lock, and creating a segment (preallocated, mapped, its pages faulted in).
//! The writer (`writer.rs`) fills them; recovery (`recover.rs`) reads them.

use super::io;
use crate::error::{Error, Result};
use memmap2::MmapMut;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// The segment being appended to: its file, its mapping and how far it is
/// written.
pub(super) struct Segment {
    pub(super) _file: File,
    pub(super) map: MmapMut,
    pub(super) tail: usize,
}

pub(super) fn seg_name(seq: u64) -> String {
    format!("seg-{seq:016x}.lqj")
}

/// Only canonical names (exactly 16 lowercase hex digits) are segments.
pub(super) fn parse_seg_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".lqj")?;
    let seq = u64::from_str_radix(hex, 16).ok()?;
    (seg_name(seq) == name).then_some(seq)
}

/// Takes the data directory's write lock (flock on `LOCK`).
pub(super) fn lock_dir(dir: &Path) -> Result<File> {
    let p = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&p)
        .map_err(|e| io("cannot open", &p, e))?;
    // A lock being released can stay held for a moment: a child process the host
    // is spawning shares the descriptor until its exec closes it. Wait up to
    // 200 ms before calling the directory locked.
    let give_up = std::time::Instant::now() + Duration::from_millis(200);
    loop {
        // SAFETY: flock takes a descriptor we own (open for the duration) and flags.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io("cannot lock", &p, e));
        }
        if std::time::Instant::now() >= give_up {
            return Err(Error::Locked(dir.display().to_string()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A created, preallocated and mapped segment file, without a header yet.
pub(super) struct Prepared {
    pub(super) seq: u64,
    pub(super) file: File,
    pub(super) map: MmapMut,
}

/// Creates segment `seq` of `size` bytes: preallocated, mapped, its pages
/// faulted in for writing (so the appends that fill it do not stop for page
/// faults).
pub(super) fn create_segment(dir: &Path, seq: u64, size: usize) -> Result<Prepared> {
    let path = dir.join(seg_name(seq));
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io("cannot create", &path, e))?;
    if let Err(e) = allocate(&file, size as u64) {
        let _ = fs::remove_file(&path);
        return Err(io("cannot allocate", &path, e));
    }
    // SAFETY: the file is ours (created just now, the directory is locked against
    // other writers) and stays open as long as the mapping, which is only
    // accessed through `Segment` under the writer mutex once it is taken.
    match unsafe { memmap2::MmapOptions::new().map_mut(&file) } {
        Ok(map) => {
            // Fault every page in *writable*, here on the preparing thread: a
            // shared file mapping populated for reading (MAP_POPULATE) still
            // takes a write fault (page_mkwrite, block mapping) per page at the
            // first append, which was most of a 64 KiB append's time. Linux
            // 5.14+; on an older kernel the appends fault the pages in instead.
            if map.advise(memmap2::Advice::PopulateWrite).is_err() {
                let _ = map.advise(memmap2::Advice::WillNeed);
            }
            Ok(Prepared { seq, file, map })
        }
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(io("cannot map", &path, e))
        }
    }
}

/// Reserves the file's blocks (so a full disk is an error now, not a SIGBUS on
/// a later write to the mapping); falls back to a sparse size where the file
/// system cannot preallocate.
pub(super) fn allocate(file: &File, size: u64) -> std::io::Result<()> {
    // SAFETY: posix_fallocate takes a descriptor we own and plain integers.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
    match r {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}
