"""videogen: turn a chat request into a saved video."""
