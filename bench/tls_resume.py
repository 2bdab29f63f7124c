"""Benchmark: the client's CPU for one TLS handshake, full or resumed, through the process's
shared context (proxycheck/transport.py rule 2), in one process over memory BIOs.

    .venv/bin/python bench/tls_resume.py

Only the client's calls are timed (``time.thread_time()``): ``wrap_bio`` (which, when a session is
offered, has CPython copy it: ``_ssl_session_dup``, an i2d + d2i of the session with the server's
certificate), every client ``do_handshake`` and the first ``read`` (TLS 1.3 tickets arrive after
the handshake). The server is a trustme certificate for example.com on the same memory BIOs; its
calls are not counted. Medians of 300 handshakes each, three rounds; also ``wrap_bio`` alone with
and without a session, and one read of ``SSLObject.session`` (which copies it too).
"""

from __future__ import annotations

import ssl
import statistics
import time

import trustme

from proxycheck.transport import shared_ssl_context


def handshake(cctx: ssl.SSLContext, sctx: ssl.SSLContext, session: ssl.SSLSession | None = None,
              keep: bool = False) -> tuple[float, bool, ssl.SSLSession | None]:
    """(client CPU µs, resumed?, the session if ``keep``)."""
    ci, co, si, so = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    spent = 0.0
    t = time.thread_time()
    c = cctx.wrap_bio(ci, co, server_hostname="example.com", session=session)
    spent += time.thread_time() - t
    s = sctx.wrap_bio(si, so, server_side=True)
    for _ in range(10):
        t = time.thread_time()
        try:
            c.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        spent += time.thread_time() - t
        if co.pending:
            si.write(co.read())
        try:
            s.do_handshake()
        except ssl.SSLWantReadError:
            pass
        if so.pending:
            ci.write(so.read())
        if done:
            break
    s.write(b"x" * 100)
    ci.write(so.read())
    t = time.thread_time()
    try:
        c.read(200)
    except ssl.SSLWantReadError:
        pass
    kept = c.session if keep else None
    spent += time.thread_time() - t
    return spent * 1e6, c.session_reused, kept


def main() -> None:
    ca = trustme.CA()
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("example.com").configure_cert(sctx)
    cctx = shared_ssl_context()
    ca.configure_trust(cctx)
    _, _, session = handshake(cctx, sctx, keep=True)
    print(f"{ssl.OPENSSL_VERSION}; client CPU per handshake (µs, median of 300):")
    for _ in range(3):
        full = statistics.median(handshake(cctx, sctx)[0] for _ in range(300))
        resumed = [handshake(cctx, sctx, session) for _ in range(300)]
        assert all(r for _, r, _ in resumed), "the server declined the session"
        print(f"  full {full:.0f}, resumed {statistics.median(r[0] for r in resumed):.0f}")
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    for offered in (None, session):
        t = time.thread_time()
        for _ in range(1000):
            cctx.wrap_bio(i, o, server_hostname="example.com", session=offered)
        print(f"  wrap_bio {'with' if offered else 'without'} a session: {(time.thread_time() - t) * 1000:.0f} µs")


if __name__ == "__main__":
    main()
