"""The package takes its numbers and its C function table from the header: every
exception's status is the header's constant of the same name, and ``_fast``'s table
(generated in C from one list) names functions the header declares, in that order."""

from __future__ import annotations

import re

from libqueue import _errors
from libqueue._ffi import _header_text, fast, ffi, lib


def test_every_exception_status_is_its_header_constant() -> None:
    classes = [getattr(_errors, n) for n in _errors.__all__ if n != "LibqueueError"]
    assert classes
    for cls in classes:
        name = ffi.string(lib.lq_status_str(cls.status)).decode()
        assert name != "LQ_UNKNOWN", cls
        assert getattr(lib, name) == cls.status, cls


def test_header_statuses_are_what_cffi_exposes() -> None:
    text = _header_text()
    pairs = re.findall(r"^\s+(LQ_[A-Z0-9_]+) = (\d+),$", text, flags=re.M)
    assert len(pairs) > 23
    for name, number in pairs:
        assert getattr(lib, name) == int(number), name


def test_fast_function_table_names_header_functions() -> None:
    names = fast.FUNCS.split()
    assert len(names) == len(set(names)) == 11
    for n in names:
        assert n.startswith("lq_") and ffi.addressof(lib, n)
