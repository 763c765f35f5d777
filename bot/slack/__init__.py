"""The Slack front end: Bolt listeners that turn slash commands and button
clicks into ``handlers.dispatch`` calls and render the replies with
``bot.render.blockkit``.

* ``app.py``: ``create_app`` / ``serve`` (HTTP or Socket Mode);
* ``commands.py``: the slash commands; ``actions.py``: the buttons;
* ``runtime.py``: what both share (actor, dedupe, posting, pull progress).
"""
