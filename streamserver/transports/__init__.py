"""Transports write a stream's event log to a client: SSE (``sse``) and WebSocket (``ws``)."""
