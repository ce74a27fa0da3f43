"""Removable media: is each USB volume encrypted? Header classification, OS probes, arrival watchers, policy.

The agent service uses only these names:

    watcher = start_watcher(on_report)          # own thread; watcher.stop()
    MediaPolicy(approved_serials=...).severity_for(report)  # None = inventory only
    os_write_policy()                           # is Windows blocking writes to unencrypted sticks?
"""

from __future__ import annotations

from agent.capture.media.classify import classify_path
from agent.capture.media.host import os_write_policy
from agent.capture.media.policy import MediaPolicy
from agent.capture.media.report import MediaReport
from agent.capture.media.watch_base import start_watcher

__all__ = ["MediaPolicy", "MediaReport", "classify_path", "os_write_policy", "start_watcher"]
