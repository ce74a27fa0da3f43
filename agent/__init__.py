"""WardWatch agent: runs on a school workstation; detects on device, sends only signed matches."""

__version__ = "0.1.0"
