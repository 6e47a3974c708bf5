"""Checks made once before the gateway listens: who could reach /admin, and whether the
process may open as many sockets as the connection cap allows."""

import ipaddress
import resource

from gateway.replicas_file import ConfigError
from gateway.settings import GatewaySettings

# Sockets besides client connections: upstream connections (about one per open request,
# bounded by the client connections), probes, files, the event loop's own.
_FDS_PER_CONNECTION = 2
_FDS_SPARE = 256


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach; a host name may resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_admin_exposure(settings: GatewaySettings) -> None:
    """ConfigError when /admin (switching the strategy, the fleet's state) would be open
    to anyone who reaches the port."""
    if settings.admin_key_value() or settings.allow_open_admin or is_loopback(settings.host):
        return
    raise ConfigError(
        f"/admin would be open to the network: listening on {settings.host} without "
        "GATEWAY_ADMIN_KEY; set an admin key, listen on 127.0.0.1, "
        "or set GATEWAY_ALLOW_OPEN_ADMIN=true"
    )


def fit_connection_cap(max_connections: int) -> tuple[int, int]:
    """Raise the soft open-files limit as far as the cap needs (up to the hard limit).
    Returns (the cap the limit allows, the limit now in force)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections * _FDS_PER_CONNECTION + _FDS_SPARE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections, soft
    return max(1, (soft - _FDS_SPARE) // _FDS_PER_CONNECTION), soft
