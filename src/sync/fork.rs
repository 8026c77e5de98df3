//! Fork detection. A child made by `fork()` inherits a copy of its parent's
//! broker — its journal mappings and descriptors, its locks in whatever state the
//! parent's threads held them, none of its threads. Nothing of that may be used
//! by the child: a `pthread_atfork` child handler bumps a process-wide
//! generation, every broker (its journal, namespaces, queues, pools) remembers
//! the generation it was made under, and every call compares the two — one
//! relaxed load of a line that is never written outside `fork`, no syscall.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Runs in the child, inside `fork`: only an atomic add (async-signal-safe).
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Relaxed);
}

/// Where a handle was made: the fork generation and the process id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    generation: u64,
    pid: u32,
}

impl Origin {
    /// The current process (installing the fork handler the first time).
    pub(crate) fn here() -> Self {
        install();
        Origin {
            generation: GENERATION.load(Relaxed),
            pid: std::process::id(),
        }
    }

    /// Whether this process is a forked child of the one the handle was made in.
    /// One relaxed load: cheap enough for every call.
    #[inline]
    pub(crate) fn inherited(&self) -> bool {
        GENERATION.load(Relaxed) != self.generation
    }

    /// [`inherited`](Self::inherited), also comparing the process id (a
    /// syscall): for close and drop paths, so a child made without the fork
    /// handlers running (a raw `clone`) cannot write either.
    pub(crate) fn inherited_exact(&self) -> bool {
        self.inherited() || std::process::id() != self.pid
    }
}

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(unix)]
        // SAFETY: registers a child handler that only performs an atomic add on
        // a static (async-signal-safe, as a handler run inside fork must be);
        // no prepare or parent handler. A failure (ENOMEM) leaves the pid
        // comparison of `inherited_exact` as the only detection.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
}
