"""The daemon (``proxycheck run``): keeps every proxy's verdict fresh in the database.

Rules:
1. Per-proxy schedules live in the database (``next_check_at``), not in memory: 100,000 proxies
   cost rows, not timers. A few fixed side tasks and periodic jobs (on APScheduler) do the work,
   one job per module:

   - ``runner.py``      lifecycle: storage and lock, builds the parts, signals, applies a reload,
                        ordered shutdown;
   - ``supervise.py``   the side tasks, tracked: one that raises or ends is a bug that stops us;
   - ``dispatcher.py``  the one claim loop (``run`` and ``run --once``), one task per check;
   - ``monitor.py``     is the checker able to judge? heartbeat, and the barrier before a blame;
   - ``writer.py``      completed checks into the database, in batches, held while it is down;
   - ``jobs.py``        source sync, retention, own-IP refresh, heartbeat;
   - ``periodic.py``    when those jobs run (APScheduler), and a bug in one stops the daemon;
   - ``reload.py``      what SIGHUP applies, and what needs a restart: a pure plan;
   - ``publish.py``     the instance row, sd_notify's STATUS and the watchdog's pings;
   - ``scrape.py``      the Prometheus metrics and what a scrape reads;
   - ``storage.py``     storage calls in threads; storage errors told apart from bugs, outages logged;
   - ``lock.py`` and ``signals.py``.
   Each part is given what it uses (storage, settings, the monitor, a wake callback), never the
   daemon: only ``runner.py`` holds them all.
2. Never blame a proxy for our own trouble: a failure is the proxy's only after a direct control
   request at that moment passed and a second try through the proxy failed too (``checker.py``
   rule 6), and it is stored only after a self-test that started after it has passed, with no
   failed heartbeat since the check began (``monitor.py``).
3. Storage errors are retried or wait for the next turn; any other exception is a bug that stops
   the daemon with exit code 1 and its traceback in the log.
"""

from .runner import Daemon, run_daemon

__all__ = ["Daemon", "run_daemon"]
