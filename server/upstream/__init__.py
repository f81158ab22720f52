"""The MSP Administrator: the client the sync reads the company tree with, the hosts it may call,
and a simulator of it.

The package exports what `client.py` exports (its `__all__`), so that list is kept in one place."""

from server.upstream.client import *  # noqa: F403 - the client's public names, listed there
from server.upstream.client import __all__ as __all__
