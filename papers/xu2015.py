"""Show, attend and tell: neural image caption generation with visual attention.

Kelvin Xu, Jimmy Ba, Ryan Kiros, Kyunghyun Cho, Aaron Courville, Ruslan Salakhutdinov, Richard Zemel,
Yoshua Bengio. ICML 2015, arXiv:1502.03044.

Not built yet: registered so that ``repro list`` shows it. Its published numbers are added, with
the table they come from, by the issue that builds it.
"""

from repro.registry import PaperEntry, register_paper

register_paper(PaperEntry(
    name="xu2015",
    title="Show, attend and tell: neural image caption generation with visual attention (soft and hard)",
    citation="Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio. ICML 2015",
    task="image captioning",
    datasets=("flickr8k", "flickr30k", "coco"),
    metrics=("test/bleu_1", "test/bleu_4", "test/meteor"),
))
