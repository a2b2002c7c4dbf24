"""Spark entrypoints: the features stream, the replay and the stream/replay comparison."""
