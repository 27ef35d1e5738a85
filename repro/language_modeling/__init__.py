"""Language modelling: what every language model and language-model corpus share.

The contract a language-model paper implements is ``LanguageModelModule`` (``repro.language_modeling.module``):
perplexity over streams of word ids, dynamic evaluation and sampling; the datamodules in
``datamodules/language_modeling`` give batches of (inputs, targets) with ``IGNORE_INDEX`` where a stream is padded.
"""


END_OF_SENTENCE = "<eos>"


UNKNOWN = "<unk>"


IGNORE_INDEX = -100
