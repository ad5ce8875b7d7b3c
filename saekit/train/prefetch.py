"""Read batches ahead in a background thread so the device never waits on the store.

The store's gather (numpy fancy indexing over memory-mapped shards) and the copy into pinned memory
release the GIL, so a thread overlaps them with the training step. The producer runs the same iterator
the loop would have run, in the same order, so prefetching changes timing only, never the batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from saekit.device import HOST

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetcher:
    """Iterate `source` `depth` items ahead in a daemon thread; `close()` (or leaving the `with`) stops it.

    An exception raised by `source` is re-raised in the consumer at the item where it happened. Closing
    early (an error or Ctrl-C in the training loop) unblocks and joins the producer.
    """

    def __init__(self, source: Iterator[Any], depth: int = 2, pin: bool = False):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._source = source
        self._pin = pin
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="saekit-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if self._pin and getattr(item, "device", None) == HOST:
                    item = item.pin_memory()  # page-locked, so the host-to-GPU copy can be non-blocking
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(_Failure(exc))

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Any:
        while True:
            if not self._thread.is_alive() and self._queue.empty():
                raise StopIteration
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                self.close()
                raise StopIteration
            if isinstance(item, _Failure):
                self.close()
                raise item.exc
            return item

    def close(self) -> None:
        """Stop the producer and wait for it (it checks the stop flag between items)."""
        self._stop.set()
        while True:  # drain so a producer blocked on a full queue sees the flag
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
