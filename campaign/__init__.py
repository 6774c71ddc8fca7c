"""campaign: send a messaging campaign from a spreadsheet through the Sociocs API.

The pipeline, one module per step: ``config`` (the campaign file) → ``recipients`` (the
spreadsheet, streamed) → ``phones`` and ``render`` (one request body per row, checked by
``rules``) → ``state`` (the journal that makes reruns safe) → ``sender`` and ``api`` (the paced
worker pool and the Sociocs client) → ``results`` (the results file). ``runner`` ties them
together; ``cli`` only parses and prints. ``sandbox`` is a local Sociocs-compatible API.
"""

__version__ = "0.1.0"
