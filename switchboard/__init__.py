"""The composition root: builds a Switchboard process from settings and hands parts down.

This is the one package that imports everything (docs/architecture.md): it reads the
environment once (:mod:`switchboard.settings`), configures logging (:mod:`switchboard.logs`),
opens SQL, Redis and the runtime (:mod:`switchboard.services`, :mod:`switchboard.runtime`),
builds the scheduler (:mod:`switchboard.scheduling`) and the Slack app
(:mod:`switchboard.serve`), and offers them as the ``switchboard`` command line
(:mod:`switchboard.cli`). Feature packages (``bot``, ``scheduler``, ``sandbox``,
``evals``…) never import it: they receive what they need through their constructors and
``register`` functions.
"""
