"""SOCKS4/4a/5/5h handshakes over our own stream, with python-socks' sans-I/O messages.

python-socks builds every request and parses every reply (``python_socks._protocols``, the
layer its own connectors use); this module only moves the bytes and says in which phase a
reply failed, so no caller ever has to read python-socks' message texts:

- SOCKS5 method choice: the proxy picked no method we offered (0xFF, or user/pass when we have
  no login) -> ``ProxyAuthFailed``; any other bad reply -> ``HandshakeMalformed``.
- SOCKS5 login (RFC 1929): any failure -> ``ProxyAuthFailed``.
- CONNECT reply with a failure code -> ``TunnelRefused`` (SOCKS4 0x5C/0x5D -> ``IdentRejected``);
  without a code (malformed) -> ``HandshakeMalformed``.
- EOF at any point -> ``HandshakeClosed``.
Deadlines are the caller's (the whole handshake runs under one).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from python_socks._protocols import socks4, socks5
from python_socks._protocols.errors import ReplyError

from .errors import HandshakeClosed, HandshakeMalformed, IdentRejected, ProxyAuthFailed, TunnelRefused

_IDENT_CODES = {0x5C, 0x5D}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


async def _resolve(host: str, family: int) -> str:
    infos = await asyncio.get_running_loop().getaddrinfo(host, 0, family=family, type=socket.SOCK_STREAM)
    return infos[0][4][0]


async def _exactly(reader: asyncio.StreamReader, n: int, target: str, what: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise HandshakeClosed(f"closed the connection during the SOCKS handshake ({what}) for {target}", target=target) from None


async def socks4_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int, *,
                         user_id: str | None, remote_dns: bool) -> None:
    target = f"{host}:{port}"
    if not remote_dns and not _is_ip(host):
        host = await _resolve(host, socket.AF_INET)
    writer.write(socks4.ConnectRequest(host=host, port=port, user_id=user_id).dumps())
    data = await _exactly(reader, socks4.ConnectReply.SIZE, target, "connect reply")
    try:
        socks4.ConnectReply.loads(data)
    except ReplyError as exc:
        code = exc.error_code
        if code in _IDENT_CODES:
            raise IdentRejected(f"refused our SOCKS4 user id (reply {code:#04x}: {exc})", target=target) from exc
        if code is not None:
            raise TunnelRefused(f"refused to open a tunnel to {target} (SOCKS4 reply {code:#04x}: {exc})", target=target) from exc
        raise HandshakeMalformed(f"answered the SOCKS4 request for {target} with a malformed reply ({data.hex()})",
                                 target=target) from exc


async def socks5_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int, *,
                         username: str | None, password: str | None, remote_dns: bool) -> None:
    target = f"{host}:{port}"
    methods = socks5.AuthMethodsRequest(username=username, password=password)
    writer.write(methods.dumps())
    data = await _exactly(reader, socks5.AuthMethodReply.SIZE, target, "method choice")
    if data[0] == socks5.SOCKS_VER and data[1] not in methods.methods:
        offered = "user/password or none" if len(methods.methods) > 1 else "no authentication"
        raise ProxyAuthFailed(f"accepted none of our SOCKS5 authentication methods ({offered}; it chose {data[1]:#04x})",
                              target=target)
    try:
        reply = socks5.AuthMethodReply.loads(data)
    except ReplyError as exc:
        raise HandshakeMalformed(f"answered the SOCKS5 greeting with a malformed reply ({data.hex()})", target=target) from exc
    if reply.method == socks5.AuthMethod.USERNAME_PASSWORD:
        writer.write(socks5.AuthRequest(username=username or "", password=password or "").dumps())
        data = await _exactly(reader, socks5.AuthReply.SIZE, target, "login")
        try:
            socks5.AuthReply.loads(data)
        except ReplyError as exc:
            raise ProxyAuthFailed(f"answered the SOCKS5 login with failure (reply {data.hex()})", target=target) from exc
    if not remote_dns and not _is_ip(host):
        host = await _resolve(host, socket.AF_UNSPEC)
    writer.write(socks5.ConnectRequest(host=host, port=port).dumps())
    data = await _exactly(reader, 3, target, "connect reply")
    if data[0] == socks5.SOCKS_VER and data[1] == socks5.ReplyCode.SUCCEEDED and data[2] == socks5.RSV:
        data += await _exactly(reader, 1, target, "connect reply")
        kind = data[3]
        if kind == socks5.AddressType.IPV4:
            data += await _exactly(reader, 6, target, "connect reply")
        elif kind == socks5.AddressType.IPV6:
            data += await _exactly(reader, 18, target, "connect reply")
        elif kind == socks5.AddressType.DOMAIN:
            size = await _exactly(reader, 1, target, "connect reply")
            data += size + await _exactly(reader, size[0] + 2, target, "connect reply")
    try:
        socks5.ConnectReply.loads(data)
    except ReplyError as exc:
        if exc.error_code is not None:
            raise TunnelRefused(f"refused to open a tunnel to {target} ({exc}, code {exc.error_code:#04x})",
                                target=target) from exc
        raise HandshakeMalformed(f"answered the SOCKS5 request for {target} with a malformed reply ({data.hex()})",
                                 target=target) from exc
