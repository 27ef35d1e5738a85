"""Translating videos to natural language using deep recurrent neural networks.

Subhashini Venugopalan, Huijuan Xu, Jeff Donahue, Marcus Rohrbach, Raymond Mooney, Kate Saenko.
NAACL 2015, arXiv:1412.4729.

Not built yet: registered so that ``repro list`` shows it. Its published numbers are added, with
the table they come from, by the issue that builds it.
"""

from repro.registry import PaperEntry, register_paper

register_paper(PaperEntry(
    name="venugopalan2014",
    title="Translating videos to natural language using deep recurrent neural networks",
    citation="Venugopalan, Xu, Donahue, Rohrbach, Mooney, Saenko. NAACL 2015",
    task="video captioning",
    datasets=("msvd",),
    metrics=("test/bleu_4", "test/meteor"),
))
