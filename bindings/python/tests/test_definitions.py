"""Namespaces with their quotas, topics and subscriptions survive a restart of a
persistent broker (issue 19), and a publish nobody takes is counted."""

import pytest

import libqueue
from libqueue import AlreadyExists, Quotas, QuotaExceeded


def test_the_issue_snippet(tmp_path):
    d = tmp_path / "data"
    b = libqueue.Broker(d)
    ns = b.create_namespace("tenant", Quotas(max_messages=5))
    ns.queue("sub1", persistent=True)
    ns.topic("events").subscribe("sub1")
    assert ns.topic("events").publish(b"one") == 1
    b.close()

    b = libqueue.Broker(d)
    ns = b.namespace("tenant")
    assert ns.topic("events").subscriptions() == ["sub1"]
    assert ns.topic("events").publish(b"two") == 1      # delivered, not dropped
    assert ns.queue("sub1").stats().ready == 2
    assert ns.topic("events").stats().dropped_no_subscriber == 0
    other = ns.queue("other")
    for _ in range(3):
        other.send(b"x")
    with pytest.raises(QuotaExceeded):                  # max_messages=5 is kept
        other.send(b"x")
    b.close()


def test_redeclaring_and_every_filter_survive(tmp_path):
    def declare(b):
        ns = b.create_namespace("tenant", Quotas(max_queues=6))
        t = ns.topic("t")
        t.subscribe("all")
        t.subscribe("named", name="create")
        t.subscribe("hdr", header=("region", b"eu"))
        t.subscribe("exec", execution_id="run-1")
        return ns, t

    with libqueue.Broker(tmp_path) as b:
        declare(b)
    with libqueue.Broker(tmp_path) as b:
        ns, t = declare(b)                              # the same again: no error
        with pytest.raises(AlreadyExists):
            b.create_namespace("tenant", Quotas(max_queues=7))
        assert t.subscriptions() == ["all", "named", "hdr", "exec"]
        assert ns.queues() == ["all", "exec", "hdr", "named"]
        assert t.publish(b"a", name="create") == 2
        assert t.publish(b"b", headers={"region": "eu"}) == 2
        assert t.publish(b"c", headers={"execution_id": "run-1"}) == 2
        assert t.publish(b"d", name="other") == 1
        t.unsubscribe("all")
    with libqueue.Broker(tmp_path) as b:
        t = b.namespace("tenant").topic("t")
        assert t.subscriptions() == ["named", "hdr", "exec"]


def test_publish_without_subscription_is_counted():
    with libqueue.Broker() as b:
        t = b.topic("nobody")
        assert t.publish(b"lost") == 0
        t.subscribe("picky", name="never")
        assert t.publish(b"unnamed") == 0
        s = t.stats()
        assert (s.published, s.dropped_no_subscriber, s.unmatched, s.subscriptions) == (2, 1, 1, 1)
        assert isinstance(s, libqueue.TopicStats)


def test_the_format_docs_reference_reader_decodes_the_definitions(tmp_path):
    """docs/journal-format.md's reference reader (section 13) reads the definition
    records this build writes, field for field."""
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[3] / "docs" / "journal-format.md"
    if not doc.exists():
        pytest.skip("not in a source checkout")
    section = doc.read_text().split("## 13. A reference reader", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    reader: dict = {}
    exec(code, reader)
    with libqueue.Broker(tmp_path) as b:
        ns = b.create_namespace("tenant", Quotas(max_messages=5, max_bytes=1000))
        t = ns.topic("events")
        t.subscribe("a")
        t.subscribe("b", name="n")
        t.subscribe("c", header=("k", b"v\x00"))
        t.subscribe("e", execution_id="x")
        t.unsubscribe("a")
    defs = [(k, f) for _, _, k, f in reader["read_dir"](str(tmp_path)) if k >= 0x80]
    assert defs == [
        (0x81, {"ns": "default", "max_queues": None, "max_messages": None, "max_bytes": None,
                "max_message_size": 64 << 20}),
        (0x81, {"ns": "tenant", "max_queues": None, "max_messages": 5, "max_bytes": 1000,
                "max_message_size": 64 << 20}),
        (0x82, {"ns": "tenant", "topic": "events"}),
        (0x83, {"ns": "tenant", "topic": "events", "queue": "a", "filter": ("all",)}),
        (0x83, {"ns": "tenant", "topic": "events", "queue": "b", "filter": ("name", "n")}),
        (0x83, {"ns": "tenant", "topic": "events", "queue": "c",
                "filter": ("header", "k", b"v\x00")}),
        (0x83, {"ns": "tenant", "topic": "events", "queue": "e",
                "filter": ("header", "execution_id", b"x")}),
        (0x84, {"ns": "tenant", "topic": "events", "queue": "a"}),
    ]
