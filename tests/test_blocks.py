"""Cutting writes into fixed-size blocks in reused buffers (blocks.py): what shipping relies on."""

from __future__ import annotations

import os

from airflow_cmdexec_provider.blocks import ReusedBlocks


def test_writes_of_any_size_come_out_as_full_blocks_in_order_then_the_rest():
    handed: list[bytearray] = []
    seen: list[bytes] = []

    def full(block: bytearray) -> None:
        handed.append(block)
        seen.append(bytes(block))
        blocks.reuse(block)  # done with it at once: the next block may fill the same buffer

    blocks = ReusedBlocks(10, full)
    data = os.urandom(95)
    for start, end in [(0, 3), (3, 3), (3, 27), (27, 28), (28, 95)]:  # spanning blocks, empty, tiny
        blocks.write(memoryview(data)[start:end])
    rest = blocks.rest()
    assert seen == [data[i : i + 10] for i in range(0, 90, 10)]
    assert rest == data[90:]
    assert len({id(block) for block in handed}) == 1
    assert blocks.rest() is None


def test_a_buffer_is_not_refilled_until_it_is_handed_back_and_a_trimmed_rest_never_is():
    kept: list[bytearray] = []
    blocks = ReusedBlocks(4, kept.append)
    blocks.write(b"abcdefgh")  # two blocks, neither handed back: two buffers
    assert [bytes(b) for b in kept] == [b"abcd", b"efgh"]
    assert kept[0] is not kept[1]
    blocks.reuse(kept[0])
    blocks.write(b"ijkl")
    assert kept[2] is kept[0]
    assert bytes(kept[1]) == b"efgh"
    blocks.write(b"mn")
    rest = blocks.rest()
    assert rest == b"mn"
    blocks.reuse(rest)  # shorter than a block: dropped, not refilled
    blocks.write(b"opqr")
    assert kept[3] is not rest
    assert bytes(kept[3]) == b"opqr"


def test_nothing_written_has_no_rest():
    blocks = ReusedBlocks(8, lambda block: None)
    assert blocks.rest() is None
    blocks.write(b"")
    assert blocks.rest() is None
