"""The daily air- and water-quality bulletin: pure computation (compute), storage and I/O (store),
renderings (render)."""
