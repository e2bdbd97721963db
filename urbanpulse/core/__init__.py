"""Shared definitions with no I/O: kind catalogue, envelope, settings, logging."""
