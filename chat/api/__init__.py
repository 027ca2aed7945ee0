"""The JSON API under /api/v1 for bots and scripts (docs/api.md): bearer tokens only,
JSON errors, the same message path and stream invariant as the pages. Its routes are
in chat/api/routes.py, spliced into the app's one route table."""
