"""The global options (--config, --verbose) are taken before and after the subcommand,
at every depth, and one given before the subcommand is not undone by its absence after."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_center.cli import build_parser


@pytest.mark.parametrize("argv", [
    ["--config", "x.toml", "up"],
    ["up", "--config", "x.toml"],
    ["up", "--duration", "5", "--config", "x.toml"],
    ["link", "status", "--config", "x.toml", "--once"],
    ["--config", "x.toml", "tmdb", "check"],
    ["tmdb", "check", "--config", "x.toml", "a.yaml"],
    ["dashboards", "build", "--config", "x.toml"],
])
def test_config_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).config == Path("x.toml")


def test_without_config_it_is_none_and_verbose_is_off() -> None:
    args = build_parser().parse_args(["up"])
    assert args.config is None
    assert args.verbose is False


@pytest.mark.parametrize("argv", [["-v", "passes"], ["passes", "-v"],
                                  ["passes", "show", "p1", "--verbose"]])
def test_verbose_anywhere(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).verbose is True


def test_after_the_subcommand_wins_over_before() -> None:
    args = build_parser().parse_args(["--config", "a.toml", "up", "--config", "b.toml"])
    assert args.config == Path("b.toml")
