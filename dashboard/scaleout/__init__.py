"""Scale-out over Redis: the broker's health, the stream codec, the publisher and the reader."""
