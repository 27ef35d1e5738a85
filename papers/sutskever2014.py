"""Sequence to sequence learning with neural networks.

Ilya Sutskever, Oriol Vinyals, Quoc V. Le. NIPS 2014, arXiv:1409.3215.

Not built yet: registered so that ``repro list`` and ``repro table`` show it with the numbers it will
be compared with. The model (4-layer LSTM encoder-decoder with a reversed source) comes with its issue.
"""

from repro.registry import PaperEntry, PublishedResult, register_paper

# Sec. 3.3: reversing the source words lowered test perplexity from 5.8 to 4.7 and raised the test
# BLEU of the decoded translations from 25.9 to 30.6 (WMT'14 English->French, single LSTM).
PUBLISHED = (
    PublishedResult("wmt14-en-fr", "test", "bleu", 25.9, "single LSTM, source not reversed", "Sutskever et al. 2014, Sec. 3.3"),
    PublishedResult("wmt14-en-fr", "test", "bleu", 30.6, "single LSTM, reversed source", "Sutskever et al. 2014, Sec. 3.3"),
    PublishedResult("wmt14-en-fr", "test", "ppl", 5.8, "single LSTM, source not reversed", "Sutskever et al. 2014, Sec. 3.3"),
    PublishedResult("wmt14-en-fr", "test", "ppl", 4.7, "single LSTM, reversed source", "Sutskever et al. 2014, Sec. 3.3"),
)

register_paper(PaperEntry(
    name="sutskever2014",
    title="Sequence to sequence learning with neural networks",
    citation="Sutskever, Vinyals, Le. NIPS 2014",
    task="machine translation",
    datasets=("wmt14-en-fr", "multi30k-en-fr", "tatoeba-en-fr"),
    metrics=("test/bleu", "test/ppl"),
    published=PUBLISHED,
))
