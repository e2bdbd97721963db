"""MQTT -> Kafka ingest bridge: decode and validate gateway messages into Reading envelopes."""
