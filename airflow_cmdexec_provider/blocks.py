"""Cut a stream of writes into blocks of a fixed size, filled into a few buffers that are reused.

Shipping to ECS gzips the tar in members of 1 MiB and uploads the result in parts of 5 MiB, in other
threads, while packing goes on. A new block per member and per part, freed in those threads, made the
worker's RSS creep with the project's size: glibc's malloc keeps such blocks in per-thread heaps that
fragment (benchmarks/README-ecs.md, "Worker RSS growth"). Filling buffers that are handed back once
their block is done keeps memory at (blocks in flight + 1) x size, whatever the stream's length.
"""

from __future__ import annotations

from collections.abc import Callable


class ReusedBlocks:
    """``write`` copies data into the current buffer and calls ``full(buffer)`` each time one holds
    ``size`` bytes; the caller hands a full buffer back with ``reuse`` once nothing reads it any more.
    ``rest`` gives what was written after the last full block."""

    def __init__(self, size: int, full: Callable[[bytearray], None]) -> None:
        self.size = size
        self.full = full
        self._current: bytearray | None = None
        self._filled = 0  # bytes of ``_current`` written so far
        self._free: list[bytearray] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            if self._current is None:
                self._current = self._free.pop() if self._free else bytearray(self.size)
            n = min(len(view), self.size - self._filled)
            self._current[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == self.size:
                block, self._current, self._filled = self._current, None, 0
                self.full(block)

    def rest(self) -> bytearray | None:
        """What was written after the last full block, trimmed to its length (in place: no copy);
        None if nothing was. The buffer is not reused after that."""
        if self._current is None or not self._filled:
            return None
        block, filled = self._current, self._filled
        self._current, self._filled = None, 0
        del block[filled:]
        return block

    def reuse(self, buffer: bytearray) -> None:
        if len(buffer) == self.size:  # not a trimmed rest
            self._free.append(buffer)

    def drop(self) -> None:
        """Forget what is being filled and the spare buffers (the stream is abandoned)."""
        self._current = None
        self._filled = 0
        self._free.clear()
