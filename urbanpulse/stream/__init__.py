"""Stream processor: pure steps (decode, check against the registry) and the Kafka runner."""
