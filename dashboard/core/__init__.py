"""The pure core: batching, quotes and bars, the hub, conflation and flow control, limits,
messages, request parameters and auth. No I/O, no clock (time comes in as an argument), no
metrics."""
