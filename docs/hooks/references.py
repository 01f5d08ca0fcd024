"""MkDocs hook: adds the generated reference pages to the site at build time.

``reference/config.md`` comes from the pydantic schema and ``reference/commands.md``
from the argument parsers (see ``config_reference`` and ``command_reference`` beside
this file); neither is written to ``docs/``, so nothing in them is typed twice.
"""

from __future__ import annotations

from command_reference import command_reference_markdown
from config_reference import config_reference_markdown
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGES = {
    "reference/config.md": config_reference_markdown,
    "reference/commands.md": command_reference_markdown,
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add each generated page as a file of the site."""
    for path, generate in PAGES.items():
        files.append(File.generated(config, path, content=generate()))
    return files
