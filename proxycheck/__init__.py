"""proxycheck: keeps a fleet of proxies pre-flight-checked for captcha-solving services.

The worker API (``get_healthy_proxy``, ``report``, ...) is imported on first use, so
``import proxycheck`` stays light for code that only wants ``Proxy``.
"""

from typing import TYPE_CHECKING, Any

from .errors import GuardTripped, NoHealthyProxy, ProxycheckError
from .proxy import Proxy, parse_proxy_url

if TYPE_CHECKING:
    from .worker import (
        Filters,
        ProxyPool,
        aget_healthy_proxies,
        aget_healthy_proxy,
        areport,
        configure,
        get_healthy_proxies,
        get_healthy_proxy,
        report,
    )
    from .worker.leasing import aacquire, acquire, alease, arelease, lease, release

__version__ = "0.1.0"
__all__ = [
    "Filters",
    "GuardTripped",
    "NoHealthyProxy",
    "Proxy",
    "ProxyPool",
    "ProxycheckError",
    "__version__",
    "aacquire",
    "acquire",
    "aget_healthy_proxies",
    "aget_healthy_proxy",
    "alease",
    "arelease",
    "areport",
    "configure",
    "get_healthy_proxies",
    "get_healthy_proxy",
    "lease",
    "parse_proxy_url",
    "release",
    "report",
]

_LAZY = {
    "Filters": "worker",
    "ProxyPool": "worker",
    "aget_healthy_proxies": "worker",
    "aget_healthy_proxy": "worker",
    "configure": "worker",
    "get_healthy_proxies": "worker",
    "get_healthy_proxy": "worker",
    "report": "worker",
    "areport": "worker",
    "lease": "worker.leasing",
    "alease": "worker.leasing",
    "acquire": "worker.leasing",
    "aacquire": "worker.leasing",
    "release": "worker.leasing",
    "arelease": "worker.leasing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'proxycheck' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
