"""The command reference page, generated from the ``fedsys`` argument parsers.

Every command, its usage line and each of its options with the option's help, default
and choices come from ``fedsys.cli._parser()`` itself, so the page cannot drift from
what ``fedsys ... --help`` prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

from fedsys.cli import _parser

INTRO = """\
# Command reference

Every `fedsys` command and option, as `fedsys COMMAND --help` prints them. Errors end
in one line on stderr (exit status 2 for a bad config, 1 for other errors, 130 when
interrupted); `fedsys --debug COMMAND ...` shows the traceback instead.

This page is generated from fedsys's argument parsers when the site is built.
"""

USAGE_WIDTH = 88


@dataclass(frozen=True)
class Command:
    """One command: its words after ``fedsys``, its help line and its parser."""

    path: tuple[str, ...]
    help: str
    parser: argparse.ArgumentParser


def commands(
    parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()
) -> Iterator[Command]:
    """Every command and sub-command, depth first, ``fedsys`` itself first."""
    parser = parser or _parser()
    if not path:
        yield Command((), parser.description or "", parser)
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            yield Command((*path, name), helps.get(name, ""), sub)
            yield from commands(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options and positional arguments of one command (not its sub-commands)."""
    return [
        action
        for action in parser._actions
        if not isinstance(action, (argparse._SubParsersAction, argparse._HelpAction))
    ]


def help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """An option's help as ``--help`` prints it (``%(default)s`` and the like expanded)."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return parser._get_formatter()._expand_help(action)


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _name(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(action.option_strings)
        takes_value = action.nargs != 0
        metavar = action.metavar or action.dest.upper()
        return f"`{names} {metavar}`" if takes_value else f"`{names}`"
    return f"`{action.metavar or action.dest}`"


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0:
        return ""
    value = action.default
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _section(command: Command) -> list[str]:
    words = " ".join(("fedsys", *command.path))
    level = "#" * min(2 + max(len(command.path) - 1, 0), 4)
    lines = [f"{level} `{words}`", ""]
    if command.path and command.help:
        text = _cell(command.help).rstrip(".")
        lines += [text[:1].upper() + text[1:] + ".", ""]
    lines += ["```text", _usage(command.parser), "```", ""]
    rows = options(command.parser)
    if rows:
        lines += ["| option | default | choices | help |", "|---|---|---|---|"]
        for action in rows:
            choices = ", ".join(f"`{c}`" for c in action.choices or ())
            text = _cell(help_text(command.parser, action))
            lines.append(f"| {_name(action)} | {_default(action)} | {choices} | {text} |")
        lines.append("")
    return lines


def command_reference_markdown() -> str:
    """The whole page: one part per command, in the order ``fedsys --help`` lists them."""
    lines = [INTRO]
    for command in commands():
        lines += _section(command)
    return "\n".join(lines)
