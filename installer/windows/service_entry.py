"""Entry point frozen into wardwatch-agent-service.exe: the agent service under the Windows Service Control Manager.

A plain console program cannot be a Windows service (the SCM kills it after 30 s with error 1053), so this wraps
`agent.service.AgentService` in pywin32's ServiceFramework. Windows only; built by wardwatch-agent.spec.
"""

import asyncio
import os
import sys
import threading
from pathlib import Path

import servicemanager
import win32service
import win32serviceutil

from agent.service import AgentService
from agent.state import AgentState

STATE_DIR = Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "WardWatch" / "agent"


class WardWatchAgentService(win32serviceutil.ServiceFramework):
    _svc_name_ = "WardWatchAgent"
    _svc_display_name_ = "WardWatch safeguarding agent"
    _svc_description_ = "Sends signed safeguarding alerts from this PC to the school's WardWatch collector."

    def __init__(self, args):
        super().__init__(args)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.service: AgentService | None = None
        self.ready = threading.Event()

    def SvcStop(self):  # the name pywin32 calls
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        self.ready.wait(timeout=30)
        if self.loop is not None and self.service is not None:
            # The same path as SIGTERM on Linux: the service reports a stop outside an upgrade, then exits.
            self.loop.call_soon_threadsafe(self.service.stopping.set)

    def SvcDoRun(self):  # the name pywin32 calls
        servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE, servicemanager.PYS_SERVICE_STARTED,
                              (self._svc_name_, ""))
        self.loop = asyncio.new_event_loop()
        self.service = AgentService(AgentState(Path(os.environ.get("WARDWATCH_STATE", STATE_DIR))))
        self.ready.set()
        self.loop.run_until_complete(self.service.run())


if __name__ == "__main__":
    if len(sys.argv) == 1:
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(WardWatchAgentService)
        servicemanager.StartServiceCtrlDispatcher()
    else:
        win32serviceutil.HandleCommandLine(WardWatchAgentService)
