"""Translation: the family's contract (``module``), its text handling (Moses tokenization, special
tokens, source reversal) and its scoring (BLEU overall and by source length)."""
