"""``transport_url`` validation, and the brokers the drivers of one process share.

``libqueue://`` is an in-memory broker private to the process: every driver of the
process uses the same one (a server and a client built from two ``get_transport``
calls must meet), and it lives as long as the process. ``libqueue:////abs/dir`` is a
persistent broker on that directory, opened by the first driver that names it and
closed (the directory released) when the last one is cleaned up.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Optional

from .._broker import Broker
from .._options import QueueOptions

#: ``sync`` values, as :class:`libqueue.Broker` takes them.
SYNC_MODES = ("none", "interval", "always")


class URLError(ValueError):
    """A ``transport_url`` this driver cannot use (the driver raises it as
    ``oslo_messaging.InvalidTransportURL``)."""


@dataclass(frozen=True)
class Settings:
    """What a broker is opened with: its directory (``None``: in memory), the sync
    mode of a persistent one and the lease time of its queues."""

    data_dir: Optional[str]
    sync: str = "none"
    lease_time: float = 300.0


def data_dir_of(url: Any) -> Optional[str]:
    """The data directory a parsed ``oslo_messaging.TransportURL`` names, or ``None``
    for ``libqueue://``; :class:`URLError` for anything else."""
    text = str(url)
    hosts = list(getattr(url, "hosts", None) or [])
    if hosts:
        raise URLError(
            f"{text}: libqueue has no server to connect to, so the URL takes no host "
            "part; use libqueue:// (in memory) or libqueue:////absolute/dir (persistent)")
    query = dict(getattr(url, "query", None) or {})
    if query:
        raise URLError(f"{text}: unknown query keys {sorted(query)}; the libqueue driver "
                       "takes none (options go in [oslo_messaging_libqueue])")
    path: Optional[str] = getattr(url, "virtual_host", None)
    if not path:
        return None
    if not path.startswith("/"):
        raise URLError(
            f"{text}: the data directory must be an absolute path, written with four "
            f"slashes: libqueue:////{path.lstrip('/')} is /{path.lstrip('/')}")
    if "\0" in path:
        raise URLError(f"{text}: the data directory holds a NUL byte")
    return os.path.normpath(path)


class _Shared:
    __slots__ = ("broker", "refs", "pid", "settings")

    def __init__(self, broker: Broker, settings: Settings) -> None:
        self.broker = broker
        self.refs = 0
        self.pid = os.getpid()
        self.settings = settings


_lock = threading.Lock()
_shared: dict[Optional[str], _Shared] = {}


def _open(s: Settings) -> Broker:
    options = QueueOptions(lease_time=s.lease_time, persistent=s.data_dir is not None)
    if s.data_dir is None:
        return Broker(queue_options=options)
    return Broker(s.data_dir, sync=s.sync, queue_options=options)


def acquire(settings: Settings) -> Broker:
    """The broker for ``settings``, opened if no driver of this process has it open.
    A broker inherited through ``fork()`` is left to the parent and a new one opened."""
    key = settings.data_dir
    if key is not None:
        key = os.path.realpath(key)
    with _lock:
        entry = _shared.get(key)
        if entry is not None and entry.pid != os.getpid():
            entry = None  # the parent's: unusable here (libqueue.Forked)
        if entry is None:
            entry = _Shared(_open(settings), settings)
            _shared[key] = entry
        elif entry.settings != settings:
            raise ValueError(
                f"the libqueue broker on {key or 'memory'} is open in this process with "
                f"{entry.settings}, not {settings}: drivers sharing it must agree")
        entry.refs += 1
        return entry.broker


def release(broker: Broker) -> None:
    """Gives back a broker from :func:`acquire`: a persistent one is closed when its
    last driver gives it back; the in-memory one lives on with the process."""
    with _lock:
        for key, entry in list(_shared.items()):
            if entry.broker is broker:
                entry.refs -= 1
                if entry.refs <= 0 and key is not None:
                    del _shared[key]
                    broker.close()
                return
