"""The producer's partitioner: remembering a key's partition must not change where it goes."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from urbanpulse.bus import RememberingPartitioner


def test_keys_go_to_the_partitions_the_default_partitioner_picks() -> None:
    default = DefaultPartitioner()
    remembering = RememberingPartitioner(max_keys=50)
    keys = [f"hcm-air-{i:04d}".encode() for i in range(200)]
    for partitions in ([0, 1, 2], list(range(12))):
        for key in keys + keys:  # the second round comes from memory (or after a clear)
            assert remembering(key, partitions, partitions) == default(key, partitions, partitions)
