"""Tornado handlers that move bytes between sockets and the core: the HTTP API, the
WebSocket, SSE and /stream handlers, and the I/O side of flow control."""
