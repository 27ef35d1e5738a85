"""One LightningDataModule per dataset family, the dataset catalog, and the embedded samples.

Grouped as the library is: ``language_modeling/`` (PTB, WikiText, any text, the agreement-grammar
sample), ``translation/`` (parallel text: WMT'14, Multi30k, Tatoeba, the translation sample) and
``captioning/`` (image captions: Flickr8k/30k, COCO, the shapes sample; video: MSVD, the motion sample).
Importing the package registers every dataset in ``datamodules.catalog``; each dataset's spec builds
its datamodule from a run's config (``DatasetSpec.make_datamodule``).
"""

from datamodules.captioning import (  # noqa: F401
                                    captions,
                                    flickr8k_text,
                                    motion_sample,
                                    msvd,
                                    shapes_sample,  # noqa: F401  (each registers its datasets)
)
from datamodules.language_modeling import agreement_grammar, ptb, wikitext  # noqa: F401
from datamodules.translation import corpora, sample  # noqa: F401
