"""vqcpc.daemon: the live generator on virtual MIDI ports (rtmidi; no torch)."""
from .clock import Transport
from .core import Daemon, DaemonConfig
from .scheduler import Ledger, Scheduler

__all__ = ["Daemon", "DaemonConfig", "Transport", "Scheduler", "Ledger"]
