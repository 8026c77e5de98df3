//! A Linux eventfd used as a level-triggered "something to receive" signal that
//! epoll / poll / select / asyncio loops can wait on.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd in non-blocking mode; readable while its counter is non-zero.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A new eventfd (close-on-exec, non-blocking), counter zero.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the flags are valid constants.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the descriptor readable (adds 1 to the counter).
    pub fn raise(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to a descriptor we own. The only
        // possible failure (EAGAIN at a counter near u64::MAX) still leaves it readable.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the descriptor not readable (reads the counter back to zero).
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from a descriptor we own; EAGAIN
        // (already zero) is the expected "nothing to clear" outcome.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    /// The raw descriptor (owned by this value; do not close it).
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
