"""The embedded local stack: real Mosquitto, Kafka and PostgreSQL/TimescaleDB servers on loopback.

``LocalStack(settings).up()`` starts them (detached, tracked by PID files under
``settings.stack.data_dir``) and waits until each answers; ``down()`` stops them.
"""

from urbanpulse.stack.local import LocalStack, ServiceState, StackError, format_states

__all__ = ["LocalStack", "ServiceState", "StackError", "format_states"]
