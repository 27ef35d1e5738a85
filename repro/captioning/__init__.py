"""Captioning, image and video: the family's contract (``module``), image encoders, reading images and
video frames, and the nearest-neighbour retrieval baseline."""
