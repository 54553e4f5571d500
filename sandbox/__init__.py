"""The sandbox: a local Slack workspace in the browser, with the unchanged bot connected to it.

``switchboard sandbox`` starts one HTTP server that hosts the bot's own HTTP app
(``/slack/events``, ``/healthz``…), a Web API emulator (``/api/``), a demo CRM for the
example ``refunds`` skill (``/crm``) and a Slack-like page (``/``). The bot talks to the
emulator exactly as it talks to Slack: signed requests in, Web API calls out.

Modules: :mod:`sandbox.workspace` (workspace state and Web API methods),
:mod:`sandbox.events` (signed payloads to the bot), :mod:`sandbox.actions` (what a person
does on the page), :mod:`sandbox.seed` (sample or file workspace, saved state),
:mod:`sandbox.crm` (demo CRM), :mod:`sandbox.web` (page, JSON API, live updates),
:mod:`sandbox.record` (record and replay), :mod:`sandbox.server` (wiring) and
:mod:`sandbox.cli` (the command).
"""
