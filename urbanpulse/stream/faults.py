"""Which failures of a batch are worth retrying, and which are a record's own fault.

Transient: the servers, not the data.  The same batch will go through once they are back, so the
processor keeps it and retries it whole (its offsets stay uncommitted):

- the connection is lost or refused: ``OSError``, asyncpg's ``InterfaceError`` (no connection,
  pool closing), SQLSTATE class 08 (``PostgresConnectionError``), and asyncpg's
  ``InternalClientError`` (a pooled connection whose server was SIGKILLed: found by the soak);
- PostgreSQL is restarting, shutting down or out of resources: class 57 (``CannotConnectNowError``,
  ``AdminShutdownError``), 53 (disk full, too many connections), 58 (I/O error);
- concurrency: class 40 (``SerializationError``, ``DeadlockDetectedError``), 55 (lock not
  available);
- class 42 (undefined table or column, privileges): the schema or the role is wrong, not the
  record; dead-lettering every record until an operator fixes it would empty the stream into the
  dead-letter topic, so it is retried (and logged) instead;
- any ``KafkaError``: what this stage sends to Kafka (dead letters) is ours and bounded, so a
  Kafka failure means Kafka is unavailable, never that the record is bad.

Permanent: everything else, above all the data errors (class 22: ``DataError``,
``NumericValueOutOfRangeError``, ``CharacterNotInRepertoireError``,
``UntranslatableCharacterError``; class 23: check and not-null violations), asyncpg's client-side
``DataError`` (a query argument it cannot encode, e.g. an integer beyond bigint) and the Python
errors a record can provoke in the processing steps (``ValueError``, ``OverflowError``...).
Class XX (internal error) is permanent too: extensions (PostGIS, TimescaleDB) report problems
with the data they were given that way, while a server really failing loses the connection (08),
shuts down (57) or reports an I/O error (58), which are transient.
Retrying them would stall the partition for ever: the batch is bisected instead and the record
that fails alone is dead-lettered with the error as its reason.
"""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaError

# SQLSTATE classes (the first two characters) of server-side failures, not the record's.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "42", "53", "55", "57", "58"})


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same batch later can succeed (see the module's docstring)."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")[:2] in TRANSIENT_SQLSTATE_CLASSES
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg's client-side DataError is an InterfaceError too, and a ValueError: a query
        # argument it could not encode.  That is the record's fault.
        return not isinstance(exc, ValueError)
    return isinstance(exc, OSError | KafkaError | asyncpg.InternalClientError)
