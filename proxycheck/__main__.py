"""``python -m proxycheck``: the same CLI as the ``proxycheck`` command."""

from .cli import main

main()
