"""Room for the messages the bridge holds, counted in messages and in bytes.

A message takes room in paho's network thread and gives it back once Kafka has answered for
all its records.  When there is none, paho's thread waits, acks stop, and the broker holds
further messages back (it never drops QoS 1 for a persistent session).  Counting bytes as well
as messages bounds the bridge's memory when messages are large: a thousand 4 MiB messages would
otherwise fit.  One message larger than the byte budget still passes when the bridge holds
nothing else, so no size of message can stall the bridge for good.
"""

from __future__ import annotations

import threading


class HandOff:
    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._messages = 0
        self._bytes = 0
        self._changed = threading.Condition()

    def acquire(self, size: int, timeout_s: float) -> bool:
        """Take room for a message of ``size`` bytes; False if there was none within the time."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._fits(size), timeout_s):
                return False
            self._messages += 1
            self._bytes += size
            return True

    def release(self, size: int) -> None:
        with self._changed:
            self._messages -= 1
            self._bytes -= size
            self._changed.notify_all()

    def _fits(self, size: int) -> bool:
        if self._messages == 0:
            return True
        return self._messages < self._max_messages and self._bytes + size <= self._max_bytes
