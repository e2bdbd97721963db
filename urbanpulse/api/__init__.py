"""FastAPI geo API: health, sensors as GeoJSON, reading time series."""
