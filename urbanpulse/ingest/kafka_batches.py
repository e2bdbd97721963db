"""Records of readings gathered per partition into Kafka record batches, one future per batch.

``AIOKafkaProducer.send`` costs 13-19 us of CPU per record (a coroutine, a size check, the
partitioner, a future per record and its result when the batch is acked); appending to a
``create_batch()`` builder and sending it with ``send_batch`` costs 4-5 us (measured with
aiokafka 0.14 on the development machine).  The bridge sends most of its records, the
readings, this way; each record still gets a future, its batch's, so acks and retries work per
record as before.

Partitions are chosen exactly as ``send`` would (the producer's default partitioner, Java's
murmur2 of the key), so a sensor's readings go to one partition whichever way they were sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from urbanpulse.bus import RememberingPartitioner
from urbanpulse.ingest.records import RECORD_BYTES, OutgoingRecord


class KafkaBatches:
    """Readings gathered over several MQTT batches: ``add`` them in order; ``flush`` sends
    what is open (the bridge does it a linger after the first MQTT batch that added some).

    Open batches outlive one MQTT batch because the broker's cost is per record batch: at a
    few thousand messages/s each wake-up of the bridge takes a handful of messages, which
    spread over the partitions made Kafka record batches of one or two records.
    """

    def __init__(self, producer: AIOKafkaProducer, partitioner: RememberingPartitioner) -> None:
        self._producer = producer
        self._partitioner = partitioner
        self._partitions: dict[str, list[int]] = {}
        # (topic, partition) -> the open batch and the future its records are given
        self._open: dict[tuple[str, int], tuple[Any, asyncio.Future[Any]]] = {}
        # One send at a time, in the order asked (asyncio.Lock wakes waiters first come, first
        # served): a partition's batches reach the producer in the order they were opened, so a
        # sensor's readings stay in order whether a batch was sent full or by ``flush``.
        self._sending = asyncio.Lock()

    @staticmethod
    def takes(record: OutgoingRecord) -> bool:
        # A larger record (a single reading that large) is sent on its own: if Kafka refuses
        # it, only it is refused.  Dead letters are not batched at all (no key).
        return record.key is not None and len(record.value) <= RECORD_BYTES

    async def add(self, record: OutgoingRecord) -> asyncio.Future[Any] | None:
        """Append a record (one that ``takes``); the future is its batch's answer.  None: send
        the record on its own (no metadata from Kafka yet, or larger than a batch may be)."""
        partitions = self._partitions.get(record.topic)
        if partitions is None:
            try:
                partitions = sorted(await self._producer.partitions_for(record.topic))
            except KafkaError:
                return None  # sending it alone retries until Kafka answers
            self._partitions[record.topic] = partitions
        place = (record.topic, self._partitioner(record.key, partitions, partitions))
        if place in self._open:
            if (future := self._append(place, record)) is not None:
                return future
            await self._send(place)  # full: send it and start another
        self._open[place] = (
            self._producer.create_batch(),
            asyncio.get_running_loop().create_future(),
        )
        if (future := self._append(place, record)) is not None:
            return future
        del self._open[place]
        return None

    @property
    def holding(self) -> bool:
        return bool(self._open)

    async def flush(self) -> None:
        """Send every open batch; partitions are looked up again from the next ``add`` on."""
        self._partitions.clear()
        for place in list(self._open):
            await self._send(place)

    def _append(self, place: tuple[str, int], record: OutgoingRecord) -> asyncio.Future[Any] | None:
        builder, future = self._open[place]
        appended = builder.append(
            timestamp=None, key=record.key, value=record.value, headers=record.headers
        )
        return future if appended is not None else None

    async def _send(self, place: tuple[str, int]) -> None:
        async with self._sending:
            opened = self._open.pop(place, None)
            if opened is None:
                return  # sent meanwhile (by flush, or full)
            builder, future = opened
            builder.close()
            topic, partition = place
            try:
                answer = await self._producer.send_batch(builder, topic, partition=partition)
            except KafkaError as exc:
                future.set_exception(exc)
            else:
                answer.add_done_callback(lambda done: _copy(done, future))


def _copy(done: asyncio.Future[Any], to: asyncio.Future[Any]) -> None:
    if done.cancelled():
        to.cancel()
    elif (exc := done.exception()) is not None:
        to.set_exception(exc)
    else:
        to.set_result(done.result())
