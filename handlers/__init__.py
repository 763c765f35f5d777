"""Platform-neutral use cases: a command line and an actor in, a Reply out.

Nothing in this package imports Slack, the terminal or Docker: front ends call
:func:`handlers.dispatch.dispatch`, the engine comes in through
``Services.engine`` (see ``handlers/ports.py``), and renderers in
``bot/render`` draw the Reply.

Importing one module of the package (settings read ``handlers.access`` for
the roles) loads that module and what it needs, not every use case: a
one-shot command starts sooner.
"""
