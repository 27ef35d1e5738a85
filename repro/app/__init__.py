"""The application: the commands, run orchestration, cluster submission, tables and figures.

It sits on top of the library (``repro.*`` outside this package) and is the only part that reaches
``papers/`` and ``datamodules/``: importing it registers every paper and every dataset, which it then
finds through the registries (``repro.registry``, ``datamodules.catalog``), never by name.
"""

import datamodules  # noqa: F401  (registers every dataset)
import papers  # noqa: F401  (registers every paper)
