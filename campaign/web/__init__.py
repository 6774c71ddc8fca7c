"""``campaign web``: the web page over the same library the CLI uses (issue 14).

- :mod:`.app`: the aiohttp routes; each calls :mod:`campaign.runner` (check, preview, send,
  status, reconcile) and none re-implements the pipeline.
- :mod:`.site`: one server's folder, secrets, send options (the API key stays here) and forms.
- :mod:`.security`: the token, CSRF, and the upload and download rules.
- :mod:`.jobs`: the sends running in the server process, with Stop.
- :mod:`.forms`: the "New campaign" form as a campaign file; the check page's problem rows.
"""

from campaign.web.app import make_app, serve

__all__ = ["make_app", "serve"]
