"""Bad input at the command line gets a clear answer printed as it is (rows of the
hardening issue's table; more rows join this file as they are fixed)."""

from __future__ import annotations

from typer.testing import CliRunner

from crowdlens.cli import app

runner = CliRunner()


def test_messages_with_brackets_are_printed_literally_not_as_markup():
    # a closing tag "[/x]" crashed rich with MarkupError; "[bold]" vanished from the message
    for chapter in ["[/x]", "[bold]training"]:
        result = runner.invoke(app, ["run", chapter, "--no-html"])
        assert result.exit_code == 1, result.output
        assert f"no chapter '{chapter}'" in result.output and "MarkupError" not in result.output
    result = runner.invoke(app, ["params", "[bold]training"])
    assert result.exit_code == 1 and "no chapter '[bold]training'" in result.output


def test_a_parameter_value_with_brackets_is_echoed_literally():
    result = runner.invoke(app, ["run", "data_tour", "-p", "sample_rows", "[/x]", "--no-html"])
    assert result.exit_code == 1 and "[/x]" in result.output and "MarkupError" not in result.output


def test_usage_names_the_chapter_argument_in_capitals():
    for command in ["run", "params"]:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "CHAPTER" in result.output and "{chapter}" not in result.output


def test_a_list_parameter_accepts_the_spellings_a_shell_user_types():
    from crowdlens.book import runner as book

    defaults = {"target_tasks": ["binary", "multiclass"]}
    for spelling, expected in [("[multiclass]", ["multiclass"]), ("binary,multiclass", ["binary", "multiclass"]),
                               ('["binary"]', ["binary"]), ("[binary, multiclass]", ["binary", "multiclass"]),
                               ("multiclass", ["multiclass"]), ("[]", [])]:
        assert book.validate_parameters("training", {"target_tasks": spelling}, defaults) == {"target_tasks": expected}


def test_an_empty_list_value_says_how_to_write_a_list():
    result = runner.invoke(app, ["run", "training", "-p", "target_tasks", "", "--no-html"])
    assert result.exit_code == 1
    assert "needs a list" in result.output and "-p target_tasks binary,multiclass" in result.output
