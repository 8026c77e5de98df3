"""The thin layer: every C function of ``libqueue.h`` declared once, the library loaded once.

The declarations are the generated header itself (``include/libqueue.h``, copied into
the package at build time), fed to cffi in ABI mode with the preprocessor lines and
``#define`` constants removed; nothing is retyped by hand, so the Python side cannot
drift from the C ABI. The numbers come from it too: a status or an option is
``lib.LQ_NOT_FOUND``, ``lib.LQ_ON_FULL_REJECT``... (the header's enums, which cffi
exposes), never a number written in Python. cffi releases the GIL around every call into the library; the
hot calls that never wait go through ``fast`` instead (``_fast.c``, a small CPython
extension given the addresses of the same loaded functions, named by its own
``FUNCS``, which its function table is generated from), which keeps the GIL.

The library is found, in order, at ``$LIBQUEUE_LIBRARY``, next to this file
(``liblibqueue.so``, bundled by the build), or through the dynamic loader
(``libqueue.so``). ``$LIBQUEUE_HEADER`` likewise overrides the header.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from cffi import FFI  # type: ignore[import-untyped,unused-ignore]

_HERE = Path(__file__).resolve().parent

#: ``LQ_WAIT_FOREVER`` (a ``#define`` in the header, so not visible to cffi).
WAIT_FOREVER = 2**64 - 1


def _header_text() -> str:
    path = os.environ.get("LIBQUEUE_HEADER") or str(_HERE / "libqueue.h")
    return Path(path).read_text(encoding="utf-8")


def _cdef_source(header: str) -> str:
    """The header as cffi's cdef accepts it: no comments, no preprocessor lines,
    no ``extern "C"`` block (the lines inside ``#ifdef __cplusplus``)."""
    text = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    skipping = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#ifdef __cplusplus"):
            skipping = True
        elif skipping:
            skipping = not stripped.startswith("#endif")
        elif not stripped.startswith("#"):
            out.append(line)
    return "\n".join(out)


def _library_path() -> str:
    env = os.environ.get("LIBQUEUE_LIBRARY")
    if env:
        return env
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    bundled = _HERE / ("liblibqueue" + suffix)
    if bundled.exists():
        return str(bundled)
    return "libqueue" + suffix


#: The cffi FFI and the loaded library (untyped: cffi describes them at run time).
ffi: Any = FFI()
ffi.cdef(_cdef_source(_header_text()))
try:
    lib: Any = ffi.dlopen(_library_path())
except OSError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"libqueue: cannot load the C library ({e}); set LIBQUEUE_LIBRARY to liblibqueue.so"
    ) from e

NULL: Any = ffi.NULL

from . import _fast as fast  # noqa: E402  (the C extension built with the package)

fast.init(tuple(int(ffi.cast("uintptr_t", ffi.addressof(lib, n))) for n in fast.FUNCS.split()))

__all__ = ["ffi", "lib", "NULL", "WAIT_FOREVER", "fast"]
