"""Persistence: SQL stores, Redis keys and clients, the run queue."""

from storage._asyncio_compat import install as _install_wait_for

_install_wait_for()
