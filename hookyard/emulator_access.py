"""Who may call the local emulators' Google APIs: this machine, and no browser page.

As Google's own emulators, they take no credentials (a client pointed at them by
`api_endpoint` sends none, or anonymous ones), so the peer address is the boundary: a stack
listening on every interface still answers them to loopback callers only.
"""

from __future__ import annotations

import ipaddress

from flask import Request

from common.errors import Forbidden
from common.http import reject_cross_site


def require_local_caller(request: Request) -> None:
    """403 for a peer that is not loopback, or a cross-site browser request from one."""
    if not is_loopback(request.remote_addr):
        raise Forbidden("the emulator APIs answer callers on this machine only")
    reject_cross_site(request)


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8 and ::1, also written as an IPv4-mapped IPv6 address."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
