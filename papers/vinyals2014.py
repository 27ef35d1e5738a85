"""Show and tell: a neural image caption generator.

Oriol Vinyals, Alexander Toshev, Samy Bengio, Dumitru Erhan. CVPR 2015, arXiv:1411.4555.

Not built yet: registered so that ``repro list`` and ``repro table`` show it with the numbers it will
be compared with. The model (CNN image embedding fed once to an LSTM) comes with its issue.
"""

from repro.registry import PaperEntry, PublishedResult, register_paper

PUBLISHED = (
    PublishedResult("coco", "test", "bleu_4", 27.7, "NIC", "Vinyals et al. 2015, Table 1 (COCO dev set)"),
    PublishedResult("coco", "test", "bleu_4", 21.7, "Human", "Vinyals et al. 2015, Table 1 (COCO dev set)"),
    PublishedResult("coco", "test", "meteor", 25.2, "Human", "Vinyals et al. 2015, Table 1 (COCO dev set)"),
    PublishedResult("coco", "test", "cider_d", 85.4, "Human", "Vinyals et al. 2015, Table 1 (COCO dev set)"),
    PublishedResult("flickr8k", "test", "bleu_1", 70.0, "Human", "Vinyals et al. 2015, Table 2"),
    PublishedResult("coco", "test", "meteor", 23.7, "NIC", "Vinyals et al. 2015, Table 1 (COCO dev set)"),
    PublishedResult("coco", "test", "cider_d", 85.5, "NIC", "Vinyals et al. 2015, Table 1 (COCO dev set)"),
    PublishedResult("flickr8k", "test", "bleu_1", 63.0, "NIC", "Vinyals et al. 2015, Table 2"),
    PublishedResult("flickr30k", "test", "bleu_1", 66.0, "NIC", "Vinyals et al. 2015, Table 2"),
)

register_paper(PaperEntry(
    name="vinyals2014",
    title="Show and tell: a neural image caption generator",
    citation="Vinyals, Toshev, Bengio, Erhan. CVPR 2015",
    task="image captioning",
    datasets=("coco", "flickr8k", "flickr30k"),
    metrics=("test/bleu_1", "test/bleu_2", "test/bleu_3", "test/bleu_4", "test/meteor", "test/rouge_l", "test/cider_d"),
    published=PUBLISHED,
))
