"""One file per paper, each readable top to bottom beside the paper; importing registers them all.

The order is the registry's, and so the order of ``repro list`` and of the results overview.
"""

from papers import mikolov2010, sutskever2014, vinyals2014, mao2014, xu2015, venugopalan2014  # noqa: F401, I001
