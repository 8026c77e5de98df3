import pytest

import libqueue


@pytest.fixture
def broker():
    with libqueue.Broker() as b:
        yield b


@pytest.fixture
def queue(broker):
    with broker.queue("t") as q:
        yield q
