"""The wire formats as the standards define them (JSON and its compressions, WebSocket
frames, SSE events, HTTP content coding): they import nothing else of ours and do no I/O."""
