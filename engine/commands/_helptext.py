"""Help text as a person reads it: no reStructuredText markup, no source-file paths.

Many command modules use their docstring as the ``--help`` description; docstrings are written
for developers (````literal````, ``:mod:`engine.synth```, "see engine/train/config.py"). The CLI
passes every parser through :func:`plain_parser` once the commands are registered.
"""

from __future__ import annotations

import argparse
import re

_SEE_SOURCE = re.compile(
    r"\s*\((?:see\s+)?(?::\w+:`[^`]+`|engine/[\w/.-]+\.py)\)"  # "(see :mod:`x`)", "(see engine/x.py)"
    r"|\s*See\s+(?::\w+:`[^`]+`|engine/[\w/.-]+\.py)\.?",  # "See engine/rpc/launchers.py."
    re.IGNORECASE,
)
_ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|exc|obj):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str | None) -> str | None:
    """``text`` without RST roles, double back-quotes and pointers into the source tree."""
    if not text:
        return text
    text = _SEE_SOURCE.sub("", text)
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return _LITERAL.sub(r"\1", text)


def plain_parser(parser: argparse.ArgumentParser) -> None:
    """Clean the description, epilog and every option's help of ``parser`` and its commands."""
    parser.description = plain(parser.description)
    parser.epilog = plain(parser.epilog)
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain(choice.help)
            for sub in set(action.choices.values()):
                plain_parser(sub)
