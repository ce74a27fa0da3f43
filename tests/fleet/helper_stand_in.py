"""A minimal session helper for supervision tests: says hello over the real local channel and stays alive.

The real helper needs a desktop; the service's supervision depends only on the hello and on the process."""

import signal
import sys
from pathlib import Path

from agent.ipc import MatchClient, socket_path_for

state = Path(sys.argv[1])
client = MatchClient(socket_path_for(state), state, hello={"session_type": "test"})
client.start()
signal.pause()
