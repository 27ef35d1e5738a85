"""One LightningDataModule per dataset, the dataset catalog, and the embedded samples."""

from datamodules import (agreement_grammar, captions, flickr8k_text, ptb, shapes_sample,  # noqa: F401
                         translation_corpora, translation_sample, wikitext)  # noqa: F401  (each registers its datasets)
from datamodules import motion_sample, msvd  # noqa: F401  (video captions: MSVD and its embedded sample)
from datamodules.catalog import DATASETS, choose_dataset, get_dataset, resolve_data_dir  # noqa: F401
