"""Run by tests/packaging/check.sh in a fresh venv where the package was installed
from a wheel or an sdist: the import works (bundled library and extension), a message
goes through a queue in memory, one survives closing and reopening a persistent
broker, and the bundled library has the bridges (built with the cargo feature). Prints the bundled library's path for the caller's checks."""

import sys
import tempfile
from pathlib import Path

import libqueue
from libqueue import _ffi

here = Path(libqueue.__file__).resolve().parent
if "site-packages" not in here.parts:
    sys.exit(f"libqueue imported from {here}, not from the venv's site-packages")

with libqueue.Broker() as broker:
    q = broker.queue("smoke")
    q.send(b"in memory", name="m")
    with q.receive(timeout=5) as d:
        assert d.body == b"in memory" and d.name == "m", (d.body, d.name)

with tempfile.TemporaryDirectory() as tmp:
    with libqueue.Broker(tmp, sync="always") as broker:
        broker.queue("jobs", persistent=True).send(b"survives a restart")
    with libqueue.Broker(tmp) as broker:
        with broker.queue("jobs", persistent=True).receive(timeout=5) as d:
            assert d.body == b"survives a restart", d.body

# Built with the feature `bridge`: a builder is made (nothing connects before start).
libqueue.Bridge.nats("nats://127.0.0.1:4222").forward("jobs", "smoke.jobs")

print(here / "liblibqueue.so")
print(f"smoke: libqueue {_ffi.ffi.string(_ffi.lib.lq_version()).decode()} from {here}: "
      "send/receive in memory and across a persistent reopen", file=sys.stderr)
