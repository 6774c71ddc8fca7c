"""``campaign web``: the web page over the same library the CLI uses (issue 14).

:mod:`campaign.web.app` holds the aiohttp routes, which call :mod:`campaign.runner` (check,
preview, send, status, reconcile) and never re-implement the pipeline; :mod:`.security` the
token, CSRF and upload/download rules; :mod:`.jobs` the sends running in the server process;
:mod:`.forms` the "New campaign" form and the check page's problem rows.
"""

from campaign.web.app import make_app, serve

__all__ = ["make_app", "serve"]
