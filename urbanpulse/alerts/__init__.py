"""Alert rules and their pure evaluation: rules from YAML, lifecycle, vi/en messages (no I/O)."""
