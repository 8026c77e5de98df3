"""CPython's own test suite for the queue module (``test.test_queue`` of the running
interpreter) run against ``libqueue.compat``, in memory and persistent (issue 13, item 11).

test_queue is written against a module (``self.queue``: its ``Queue``, ``LifoQueue``,
``PriorityQueue``, ``SimpleQueue``, ``Empty``, ``Full`` and, from 3.13, ``ShutDown``);
here that module is ``libqueue.compat``, or a copy of it whose classes each open a fresh
journal directory. On 3.13 this includes the shutdown tests.

Left out, with the reason:
- ``FailingQueueTest``: it overrides ``queue.Queue``'s private ``_put``/``_get`` hooks,
  which ``compat.Queue`` does not call (the engine stores, orders and waits).
- ``test_references`` when persistent: a persistent queue returns an unpickled copy of
  each item, not the object put (and the test's items are of an unpicklable local class).
"""

from __future__ import annotations

import itertools
import os
import tempfile
import types
import unittest

import pytest

from libqueue import compat

tq = pytest.importorskip("test.test_queue", reason="CPython's test package is not installed")

_dirs = tempfile.TemporaryDirectory(prefix="lq-test-queue-")
_n = itertools.count()


def _fresh_dir() -> str:
    return os.path.join(_dirs.name, str(next(_n)))


def _persistent(cls: type) -> type:
    """``cls`` with a fresh journal directory per instance, under the same name (the
    tests look at ``__class__.__name__``)."""
    if cls is compat.SimpleQueue:
        def init(self: compat.SimpleQueue, *a: object) -> None:
            compat.SimpleQueue.__init__(self, _fresh_dir())
    else:
        def init(self, maxsize: int = 0) -> None:  # type: ignore[no-untyped-def]
            cls.__init__(self, maxsize, _fresh_dir())
    return type(cls.__name__, (cls,), {"__init__": init})


persistent_compat = types.ModuleType("persistent_compat")
persistent_compat.__dict__.update(
    {k: getattr(compat, k) for k in ("Empty", "Full", "ShutDown")},
    Queue=_persistent(compat.Queue), LifoQueue=_persistent(compat.LifoQueue),
    PriorityQueue=_persistent(compat.PriorityQueue),
    SimpleQueue=_persistent(compat.SimpleQueue))


def _simple_setup(self: unittest.TestCase) -> None:
    self.type2test = self.queue.SimpleQueue  # type: ignore[attr-defined]
    tq.BaseSimpleQueueTest.setUp(self)


def _skip(reason: str):  # type: ignore[no-untyped-def]
    @unittest.skip(reason)
    def skipped(self: unittest.TestCase) -> None:
        pass
    return skipped


for _mode, _module in (("Memory", compat), ("Persistent", persistent_compat)):
    for _mixin in (tq.QueueTest, tq.LifoQueueTest, tq.PriorityQueueTest, tq.BaseSimpleQueueTest):
        _attrs: dict[str, object] = {"queue": _module}
        if _mixin is tq.BaseSimpleQueueTest:
            _attrs["setUp"] = _simple_setup
            if _module is persistent_compat:
                _attrs["test_references"] = _skip("a persistent queue hands back copies")
        _name = f"Test{_mode}{_mixin.__name__.replace('Base', '')}"
        globals()[_name] = type(_name, (_mixin, unittest.TestCase), _attrs)
