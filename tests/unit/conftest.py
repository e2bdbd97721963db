from hypothesis import HealthCheck, settings

# CI runs the unit tests beside busy servers: judge inputs, not the machine's speed.
settings.register_profile("urbanpulse", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("urbanpulse")
