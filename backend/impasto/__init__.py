"""Impasto: feed-forward style transfer and super-resolution (Johnson, Alahi & Fei-Fei, 2016)."""

__version__ = "0.1.0"
