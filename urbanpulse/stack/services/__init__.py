"""The servers of the local stack, one module each, all behind ``base.Service``."""

from urbanpulse.stack.services.base import Service
from urbanpulse.stack.services.kafka import Kafka
from urbanpulse.stack.services.mosquitto import Mosquitto
from urbanpulse.stack.services.postgres import Postgres

# In the order of the data's path (the status table's order).
SERVICES: tuple[type[Service], ...] = (Mosquitto, Kafka, Postgres)

__all__ = ["SERVICES", "Kafka", "Mosquitto", "Postgres", "Service"]
