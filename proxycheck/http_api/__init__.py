"""The HTTP endpoint ``proxycheck run`` serves for workers not written in Python.

    app.py     the routes and their lifecycle: HttpApi(settings, engine, pool, metrics, checker_state)
    page/      the status page for browsers under /ui (login, session, templates, vendored charts)
    guard.py   who may ask: the Host rule, the bearer token, JSON-only POST bodies
    reads.py   how reads stay off the daemon's event loop and bounded under load

The token itself (where it comes from, the generated file) is ``proxycheck.http_token``: workers
use it too, without aiohttp.
"""

from .app import HttpApi

__all__ = ["HttpApi"]
