"""UrbanPulse: MQTT sensor feeds -> Kafka -> stream processing -> TimescaleDB -> geo API."""

__version__ = "0.1.0"
