"""Message ids: both implementations (ext/msgid.pyx and mqhook._msgid_py) make EMQX guids."""

from __future__ import annotations

import re
import time
from types import ModuleType

import pytest

import mqhook._msgid_py as py_ids
from mqhook.broker import message
from mqhook.broker.message import Message

from .natives import both, compiled

C_IDS = compiled("mqhook._msgid")
IMPLEMENTATIONS = both("mqhook._msgid", py_ids)
ID_RE = re.compile(r"^[0-9A-F]{32}$")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_ids_are_emqx_guids_unique_and_time_ordered(impl: ModuleType) -> None:
    now = time.time()
    ids = [impl.new_message_id(now + i * 1e-6) for i in range(20_000)]
    assert all(ID_RE.match(i) for i in ids)
    assert len(set(ids)) == len(ids)  # the 16-bit sequence makes ids that share a microsecond differ
    assert [i[:16] for i in ids] == sorted(i[:16] for i in ids)  # microseconds first: ordered by time
    assert abs(int(ids[0][:16], 16) - now * 1_000_000) < 2


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_node_bits_fill_the_middle_of_every_id(impl: ModuleType) -> None:
    impl.set_node_bits(0xABCDEF012345 << 16)
    try:
        mid = impl.new_message_id(1_700_000_000.0)
        assert mid[:16] == f"{1_700_000_000_000_000:016X}" and mid[16:28] == "ABCDEF012345"
    finally:
        impl.set_node_bits(message.NODE_BITS)


def test_a_message_makes_its_id_once_from_the_selected_module() -> None:
    impl = C_IDS if message.IMPLEMENTATION == "cython" else py_ids
    assert message.new_message_id is impl.new_message_id  # one sequence for the whole process
    msg = Message("t", b"", 0, False, {}, "c")
    assert msg.id is msg.id and ID_RE.match(msg.id)
