"""Data files shipped with UrbanPulse (area sets for the demo and the tests)."""
