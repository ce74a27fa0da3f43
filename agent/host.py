"""What the agent tells the collector about the machine it runs on."""

from __future__ import annotations

import platform
import socket
from pathlib import Path

from agent import __version__
from protos import wardwatch_pb2 as pb


def host_info() -> pb.HostInfo:
    machine_id = ""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            machine_id = Path(path).read_text().strip()
            break
        except OSError:
            continue
    return pb.HostInfo(hostname=socket.gethostname(), os=platform.system().lower(), os_version=platform.platform(),
                       agent_version=__version__, machine_id=machine_id)
