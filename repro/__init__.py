"""repro: PyTorch Lightning reproductions of classic recurrent-network papers.

The flow of ``python -m repro run PAPER``: CLI flags -> registry entry -> resolved config ->
datamodule -> LightningModule -> trainer factory -> fit, test -> run record -> ``repro table``.
"""

__version__ = "0.1.0"
