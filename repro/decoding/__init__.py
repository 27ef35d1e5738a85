"""Decoding shared by every sequence generator: beam search over a step function and a reorderable state."""
