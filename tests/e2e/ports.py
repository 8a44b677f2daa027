"""Free TCP ports for test and benchmark servers.

A port taken by binding to port 0 comes from the kernel's ephemeral range,
the same range every outgoing connection takes its local port from; between
the moment a test picks it and the moment its server binds it, a visor's
connection can take it ("Address already in use"). So ports are picked
below that range, where no outgoing connection lands, each one at most once
per process.
"""

import random
import socket

_given = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A loopback TCP port nobody listens on, below the ephemeral range."""
    high = _ephemeral_low()
    low = 10000 if high > 12000 else 1024
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {low}..{high - 1}")
