"""proxycheck: keeps a fleet of proxies pre-flight-checked for captcha-solving services."""

from .errors import NoHealthyProxy, ProxycheckError
from .proxy import Proxy, parse_proxy_url

__version__ = "0.1.0"
__all__ = ["NoHealthyProxy", "Proxy", "ProxycheckError", "parse_proxy_url", "__version__"]
