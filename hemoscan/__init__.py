"""hemoscan: distributed batch screening of head-CT archives (research and triage, not diagnosis)."""

__version__ = "0.1.0"
