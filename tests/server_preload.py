"""Imported once by the process that test servers are forked from (tests/support.py):
the work every `chat serve` does before it can answer that is the same each time,
done once instead of after each fork."""

import chat.app
import chat.cli

# Compiled into the process-wide cache (chat.app.COMPILED_TEMPLATES) that the
# server's startup then loads them from: 0.2 s a start here.
_templates = chat.app.create_templates().env
for name in _templates.list_templates():
    _templates.get_template(name)
