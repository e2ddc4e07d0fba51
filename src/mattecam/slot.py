"""A one-slot, newest-frame-wins handoff between two threads."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class SlotClosed(Exception):  # noqa: N818 - an end-of-stream signal, not an error
    """Raised by :meth:`Slot.get` once the producer has closed the slot and it is empty."""


class Slot(Generic[T]):
    """Holds at most one item; the producer never waits unless asked to.

    In the default (live) mode :meth:`put` overwrites an item the consumer has not taken yet
    and counts it in :attr:`dropped`, so the consumer always gets the newest item and latency
    never builds up. With ``lossless=True`` (batch processing of a file) :meth:`put` waits for
    the consumer instead, so no frame is lost.

    Thread safety: one producer and one consumer thread; all state is guarded by one
    condition variable. Every wait has a timeout so callers can check their stop events.
    """

    def __init__(self, *, lossless: bool = False) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.lossless = lossless
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T, timeout: float | None = 0.1) -> bool:
        """Offer ``item``. Returns False only in lossless mode when the slot stayed full.

        In live mode it always succeeds, replacing (and counting as dropped) an untaken item.
        """
        with self._cond:
            if self._closed:
                raise SlotClosed("put() on a closed slot")
            if self._full:
                if self.lossless:
                    if not self._cond.wait_for(lambda: not self._full or self._closed, timeout):
                        return False
                    if self._closed:
                        raise SlotClosed("slot closed while waiting")
                else:
                    self.dropped += 1
            self._item = item
            self._full = True
            self.put_count += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = 0.1) -> T | None:
        """Take the item, waiting up to ``timeout`` seconds; None if nothing arrived.

        Raises:
            SlotClosed: the producer closed the slot and nothing is left in it.
        """
        with self._cond:
            if not self._full:
                if self._closed:
                    raise SlotClosed("slot closed")
                self._cond.wait_for(lambda: self._full or self._closed, timeout)
                if not self._full:
                    if self._closed:
                        raise SlotClosed("slot closed")
                    return None
            item = self._item
            self._item = None
            self._full = False
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Mark the end of the stream; an item still in the slot can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed
