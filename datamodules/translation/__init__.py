"""Parallel text: WMT'14, Multi30k, Tatoeba, any line-aligned corpus, and the embedded translation sample."""
