"""Bridges from Python (``libqueue.Bridge``, ``Broker.bridge``) against a real
``nats-server`` with JetStream, started by these tests on 127.0.0.1 with a free port
and a temporary store, and killed at the end (``make setup`` installs Debian's; the
tests are skipped, saying so, only when there is none). Every wait is bounded."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

import libqueue
from libqueue import Bridge, BridgeStats


def _server_binary() -> Optional[str]:
    env = os.environ.get("LQ_NATS_SERVER")
    if env:
        return env
    found = shutil.which("nats-server")
    if found:
        return found
    for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if os.access(p, os.X_OK):
            return p
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """nats-server -js on 127.0.0.1 with a temporary store; killed by stop()."""

    def __init__(self, binary: str, store: Path) -> None:
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(store)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nats-server exited with {self.proc.returncode}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nats-server did not accept connections within 15 s")
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    binary = _server_binary()
    if binary is None:
        pytest.skip("nats-server is not installed (`make setup` installs it: apt-get install "
                    "nats-server; or set LQ_NATS_SERVER)")
    server = NatsServer(binary, tmp_path_factory.mktemp("nats-store"))
    try:
        yield server
    finally:
        server.stop()


def wait_until(bridge: Bridge, what: str, cond: Callable[[BridgeStats], bool],
               limit: float = 30) -> BridgeStats:
    deadline = time.monotonic() + limit
    while True:
        s = bridge.stats()
        if cond(s):
            return s
        assert time.monotonic() < deadline, f"{what}: not within {limit} s; {s}"
        time.sleep(0.01)


def test_messages_go_out_and_come_back_with_their_fields(broker: libqueue.Broker,
                                                         nats: NatsServer) -> None:
    n = 200
    bridge = (Bridge.nats(nats.url)
              .stream("PYOUT", ["py.out", "py.spare"])
              .forward("jobs", "py.out")
              .receive("py.out", "back")
              .window(16)
              .backoff(0.01, 0.5)
              .identity("pytest")
              .start(broker))
    with bridge:
        assert isinstance(bridge, libqueue.Bridge)
        jobs = broker.queue("jobs")
        for i in range(n):
            jobs.send(f"job-{i}".encode(), name="greet", headers={"k": f"v{i}"},
                      correlation_id=f"c{i}", priority=i % 10)
        s = wait_until(bridge, "all out and back", lambda s: s.forwarded == n and s.received == n)
        assert s.connected and s.dead_lettered == 0 and s.pending_outbound == 0
        back = broker.queue("back")
        seen = set()
        for _ in range(n):  # by priority, so not in the sending order
            with back.receive(timeout=5) as d:
                i = int(d.body.decode().removeprefix("job-"))
                assert i not in seen
                seen.add(i)
                assert d.name == "greet"
                assert d.headers["k"] == f"v{i}".encode()
                assert d.correlation_id == f"c{i}"
                assert d.priority == i % 10
        assert seen == set(range(n))
        with pytest.raises(libqueue.Empty):
            back.receive(timeout=0)
    # Stopped: the final counters stay, and the handle is closed.
    assert bridge.closed
    final = bridge.stats()
    assert final.forwarded == n and final.received == n
    bridge.stop()  # idempotent
    bridge.close()


def test_broker_bridge_keywords_and_stats_dataclass(broker: libqueue.Broker,
                                                    nats: NatsServer) -> None:
    with broker.bridge(nats.url, forward={"kw": "pykw.in"}, receive=[("pykw.in", "kw-back")],
                       streams={"PYKW": ["pykw.>"]}, window=4, ack_timeout=5,
                       connect_timeout=5, duplicate_window=60, max_age=3600) as bridge:
        broker.queue("kw").send(b"one")
        s = wait_until(bridge, "one out and back", lambda s: s.received == 1)
        assert isinstance(s, BridgeStats)
        assert s.forwarded == 1 and s.retries == 0 and s.duplicates == 0
        assert s.last_error is None and s.last_error_at is None and s.error_since is None
        with broker.queue("kw-back").receive(timeout=5) as d:
            assert d.body == b"one"
        # One forwarder per queue.
        with pytest.raises(libqueue.AlreadyExists, match="kw"):
            broker.bridge(nats.url, forward={"kw": "pykw.in"})


def test_bad_input_is_refused_where_it_is_given(broker: libqueue.Broker) -> None:
    for url in ["", "nats://a b:4222", "http://127.0.0.1:4222", "nats://h:99999"]:
        with pytest.raises(libqueue.InvalidArgument, match="bridge URL"):
            Bridge.nats(url)
    with pytest.raises(TypeError, match="url"):
        Bridge.nats(b"nats://h:1")  # type: ignore[arg-type]
    b = Bridge.nats("nats://127.0.0.1:1")
    with pytest.raises(TypeError, match="queue"):
        b.forward(1, "a.b")  # type: ignore[arg-type]
    with pytest.raises(libqueue.InvalidArgument, match="window"):
        b.window(0)
    with pytest.raises(ValueError, match="first"):
        b.backoff(0, 1)
    with pytest.raises(libqueue.InvalidArgument, match="backoff"):
        b.backoff(2, 1)
    with pytest.raises(TypeError, match="seconds"):
        b.max_age("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b.stream("S", [])
    with pytest.raises(TypeError, match="yes"):
        b.connect_in_background(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="broker"):
        b.start("broker")  # type: ignore[arg-type]
    # No route: start refuses, and the builder is spent.
    with pytest.raises(libqueue.InvalidArgument, match="at least one"):
        b.start(broker)
    with pytest.raises(libqueue.InvalidState, match="spent"):
        b.forward("q", "a.b")
    with pytest.raises(libqueue.InvalidArgument, match="subject"):
        Bridge.nats("nats://127.0.0.1:1").forward("q", "x.*").start(broker)
    with pytest.raises(libqueue.InvalidName):
        Bridge.nats("nats://127.0.0.1:1").forward("no space", "x.y").start(broker)
    with pytest.raises(ValueError, match="kind"):
        broker.bridge("nats://127.0.0.1:1", kind="carrier-pigeon", forward={"q": "a.b"})
    with pytest.raises(TypeError, match="forward"):
        broker.bridge("nats://127.0.0.1:1", forward="q")  # type: ignore[arg-type]


def test_unreachable_fails_or_shows_the_error(broker: libqueue.Broker) -> None:
    nobody = f"nats://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(libqueue.IOFailure, match=nobody):
        Bridge.nats(nobody).forward("kept", "x.y").connect_timeout(1.5).start(broker)
    assert time.monotonic() - t0 < 15
    with broker.bridge(nobody, forward={"kept": "x.y"}, connect_in_background=True) as bridge:
        broker.queue("kept").send(b"waits")
        s = wait_until(bridge, "the error shown", lambda s: s.last_error is not None, 15)
        assert not s.connected and s.forwarded == 0 and s.pending_outbound == 1
        assert s.last_error_at is not None and s.error_since is not None
        assert s.error_since <= s.last_error_at <= datetime.now(timezone.utc)


def test_no_stream_and_a_closed_broker(nats: NatsServer) -> None:
    broker = libqueue.Broker()
    with pytest.raises(libqueue.NotFound, match="nobody.here"):
        broker.bridge(nats.url, forward={"q": "nobody.here"})
    bridge = broker.bridge(nats.url, forward={"q": "pyclose.q"}, streams={"PYCLOSE": ["pyclose.q"]})
    broker.close()  # the running bridge's routes end; stopping it returns promptly
    t0 = time.monotonic()
    bridge.stop()
    assert time.monotonic() - t0 < 15
    with pytest.raises(libqueue.Closed):
        broker.bridge(nats.url, forward={"q": "pyclose.q"})


def test_the_bridge_keeps_its_broker_alive(nats: NatsServer) -> None:
    bridge = libqueue.Broker().bridge(nats.url, forward={"alive": "pyalive.q"},
                                      streams={"PYALIVE": ["pyalive.q"]})
    try:
        wait_until(bridge, "connected", lambda s: s.connected, 10)
    finally:
        bridge.stop()
    with pytest.raises(libqueue.Closed):
        bridge._call(lambda h: h)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_cannot_use_the_parents_bridge(broker: libqueue.Broker,
                                                     nats: NatsServer) -> None:
    with broker.bridge(nats.url, forward={"fk": "pyfork.q"},
                       streams={"PYFORK": ["pyfork.q"]}) as bridge:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the bridge runs in the parent only
            code = 1
            try:
                try:
                    bridge.stats()
                except libqueue.Forked:
                    code = 0
                bridge.stop()  # lets go of it, touching nothing of the parent's
            finally:
                os.write(w, bytes([code]))
                os._exit(0)
        os.close(w)
        verdict = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
        assert verdict == b"\0", "the child's stats() did not raise Forked"
        broker.queue("fk").send(b"after the fork")
        wait_until(bridge, "forwarded after the fork", lambda s: s.forwarded == 1)


# ---- RabbitMQ --------------------------------------------------------------------

_REPO = Path(__file__).resolve().parents[3]
_RABBIT_SH = _REPO / "benches" / "rabbitmq.sh"


class RabbitServer:
    """A private rabbitmq-server on 127.0.0.1 (benches/rabbitmq.sh: its own ports and
    directory; start bounded at 120 s), with the durable queues ``queues``."""

    def __init__(self, where: Path, queues: list[str]) -> None:
        self.dir = where / "rabbit"
        out = subprocess.run([str(_RABBIT_SH), "start", str(self.dir)], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=150)
        if out.returncode != 0:
            self.stop()
            raise RuntimeError(f"RabbitMQ did not start: {out.stderr[-2000:]}")
        # rabbit://guest:guest@127.0.0.1:PORT/ -> the vhost "/" spelled for amqp://
        self.url = "amqp://" + out.stdout.strip().removeprefix("rabbit://") + "%2f"
        for q in queues:
            subprocess.run([str(_RABBIT_SH), "queue", str(self.dir), q], check=True, timeout=70,
                           stdin=subprocess.DEVNULL, capture_output=True)

    def stop(self) -> None:
        subprocess.run([str(_RABBIT_SH), "stop", str(self.dir)], timeout=90,
                       stdin=subprocess.DEVNULL, capture_output=True)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    if not os.access("/usr/lib/rabbitmq/bin/rabbitmq-server", os.X_OK):
        pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    server = RabbitServer(tmp_path_factory.mktemp("rabbit"), ["py.back", "py.kw"])
    try:
        yield server
    finally:
        server.stop()


def test_rabbitmq_messages_go_out_and_come_back(broker: libqueue.Broker,
                                                 rabbit: RabbitServer) -> None:
    n = 100
    bridge = (Bridge.rabbitmq(rabbit.url)
              .forward("r-jobs", exchange="", routing_key="py.back")
              .forward("r-more", "py.back")  # the default exchange, key = the queue
              .receive("py.back", "r-back")
              .window(16)
              .backoff(0.01, 0.5)
              .identity("pytest")
              .start(broker))
    with bridge:
        jobs = broker.queue("r-jobs")
        for i in range(n):
            jobs.send(f"job-{i}".encode(), name="greet", headers={"k": f"v{i}"},
                      correlation_id=f"c{i}")
        broker.queue("r-more").send(b"more")
        s = wait_until(bridge, "all out and back",
                       lambda s: s.forwarded == n + 1 and s.received == n + 1, limit=60)
        assert s.connected and s.dead_lettered == 0 and s.pending_outbound == 0
        back = broker.queue("r-back")
        got = []
        for _ in range(n + 1):
            with back.receive(timeout=5) as d:
                got.append(d.body)
                if d.body != b"more":
                    i = int(d.body.decode().removeprefix("job-"))
                    assert d.name == "greet"
                    assert d.headers["k"] == f"v{i}".encode()
                    assert d.correlation_id == f"c{i}"
        assert [b for b in got if b != b"more"] == [f"job-{i}".encode() for i in range(n)]
        assert got.count(b"more") == 1
        with pytest.raises(libqueue.Empty):
            back.receive(timeout=0)
    assert bridge.stats().forwarded == n + 1


def test_rabbitmq_broker_bridge_takes_an_amqp_url(broker: libqueue.Broker,
                                                  rabbit: RabbitServer) -> None:
    with broker.bridge(rabbit.url, forward={"r-kw": ("", "py.kw")},
                       receive=[("py.kw", "r-kw-back")], window=4, ack_timeout=5) as bridge:
        broker.queue("r-kw").send(b"one")
        s = wait_until(bridge, "one out and back", lambda s: s.received == 1)
        assert s.forwarded == 1 and s.last_error is None
        with broker.queue("r-kw-back").receive(timeout=5) as d:
            assert d.body == b"one"
    # A missing exchange and a missing remote queue: NotFound, naming them.
    with pytest.raises(libqueue.NotFound, match="no.such.exchange"):
        broker.bridge(rabbit.url, forward={"r-x": ("no.such.exchange", "k")})
    with pytest.raises(libqueue.NotFound, match="no.such.queue"):
        broker.bridge(rabbit.url, receive={"no.such.queue": "r-y"})


def test_rabbitmq_bad_input(broker: libqueue.Broker) -> None:
    for bad in ["", "nats://127.0.0.1:4222", "amqps://h:1", "amqp://"]:
        with pytest.raises(libqueue.InvalidArgument, match="bridge URL"):
            Bridge.rabbitmq(bad)
    with pytest.raises(TypeError, match="url"):
        Bridge.rabbitmq(b"amqp://h:1/")  # type: ignore[arg-type]
    b = Bridge.rabbitmq("amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(libqueue.InvalidArgument, match="does not apply to a RabbitMQ"):
        b.stream("S", ["a.b"])
    with pytest.raises(libqueue.InvalidArgument, match="does not apply to a RabbitMQ"):
        b.duplicate_window(60)
    with pytest.raises(libqueue.InvalidArgument, match="does not apply to a RabbitMQ"):
        b.receive("rq", "q", durable="d")
    with pytest.raises(TypeError, match="routing_key"):
        b.forward("q", exchange="x")
    with pytest.raises(TypeError, match="not both"):
        b.forward("q", "k", routing_key="k")
    with pytest.raises(TypeError, match="subject or a routing_key"):
        b.forward("q")
    with pytest.raises(TypeError, match="routing_key"):
        b.forward("q", routing_key=5)  # type: ignore[arg-type]
    with pytest.raises(libqueue.InvalidArgument, match="does not apply to a NATS"):
        Bridge.nats("nats://127.0.0.1:1").forward("q", exchange="x", routing_key="k")
    with pytest.raises(ValueError, match="kind"):
        broker.bridge("amqp://h:1/", kind="kafka", forward={"q": "k"})
    # kind="nats" given for an amqp:// URL: the NATS URL check refuses it.
    with pytest.raises(libqueue.InvalidArgument, match="bridge URL"):
        broker.bridge("amqp://h:1/", kind="nats", forward={"q": "k"})
    # Nobody listens: IOFailure naming the address, within the connect timeout.
    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(libqueue.IOFailure, match=f"127.0.0.1:{port}"):
        broker.bridge(f"amqp://guest:guest@127.0.0.1:{port}/", forward={"r-kept": "k"},
                      connect_timeout=1.5)
    assert time.monotonic() - t0 < 15
