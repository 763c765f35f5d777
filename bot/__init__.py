"""Dockhand's outside world: config, engine adapter, front ends, wiring."""

__version__ = "0.1.0"
