"""Simulators that stand in for the city's hardware: device models, fleets, MQTT gateways."""
