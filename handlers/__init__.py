"""Platform-neutral use cases: a command line and an actor in, a Reply out.

Nothing in this package imports Slack, the terminal or Docker: front ends call
:func:`dispatch`, the engine comes in through ``Services.engine`` (see
``handlers/ports.py``), and renderers in ``bot/render`` draw the Reply.
"""

from .dispatch import dispatch, preflight

__all__ = ["dispatch", "preflight"]
