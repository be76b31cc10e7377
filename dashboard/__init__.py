"""Live market-data dashboard server: feeds → batcher → hub → WebSocket / SSE → page."""

__version__ = "0.1.0"
