"""Deep captioning with multimodal recurrent neural networks (m-RNN).

Junhua Mao, Wei Xu, Yi Yang, Jiang Wang, Zhiheng Huang, Alan Yuille. ICLR 2015, arXiv:1412.6632.

Not built yet: registered so that ``repro list`` shows it. Its published numbers are added, with
the table they come from, by the issue that builds it.
"""

from repro.registry import PaperEntry, register_paper

register_paper(PaperEntry(
    name="mao2014",
    title="Deep captioning with multimodal recurrent neural networks (m-RNN)",
    citation="Mao, Xu, Yang, Wang, Huang, Yuille. ICLR 2015",
    task="image captioning",
    datasets=("flickr8k", "flickr30k", "coco"),
    metrics=("test/bleu_1", "test/bleu_4", "test/ppl", "test/cider"),
))
