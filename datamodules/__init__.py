"""One LightningDataModule per dataset, the dataset catalog, and the embedded samples."""

from datamodules import agreement_grammar, flickr8k_text, ptb  # noqa: F401  (each registers its datasets)
from datamodules.catalog import DATASETS, choose_dataset, get_dataset, resolve_data_dir  # noqa: F401
