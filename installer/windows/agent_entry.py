"""Entry point frozen into wardwatch-agent.exe: the same CLI as `wardwatch-agent` on Linux."""

import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
