"""The status page ``proxycheck run`` serves under ``/ui`` on its HTTP endpoint (issue 13).

    session.py   who may see it: login with the token, the session cookie, CSRF, the CSP
    queries.py   what it reads: history aggregated in SQL, one table page, one proxy
    routes.py    the routes, rendering templates/ (jinja2, autoescaped); static/ ships in the wheel
"""

from .routes import Page

__all__ = ["Page"]
