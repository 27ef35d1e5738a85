"""One file per paper, each readable top to bottom beside the paper; importing registers them all."""

from papers import mikolov2010, sutskever2014, vinyals2014, mao2014, xu2015, venugopalan2014  # noqa: F401
