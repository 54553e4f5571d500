"""Datasets load, and their errors name the file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from evals.dataset import DatasetError, discover_datasets, load_dataset, load_dataset_text
from skills.catalog import load_registry
from skills.spec import builtin_dir

BUILTIN = {"ask", "summarize", "digest", "refunds"}


def issues(text: str) -> list[str]:
    with pytest.raises(DatasetError) as caught:
        load_dataset_text(textwrap.dedent(text), filename="x.eval.yaml")
    return [str(issue) for issue in caught.value.issues]


def test_every_builtin_skill_has_a_dataset_with_adversarial_cases() -> None:
    datasets = [load_dataset(path) for path in discover_datasets([builtin_dir()])]
    assert {d.skill for d in datasets} == BUILTIN
    registry = load_registry([], env={})
    for dataset in datasets:
        assert dataset.skill in registry.registry
        assert len(dataset.cases) >= 15, dataset.name
        tags = {tag for case in dataset.cases for tag in case.tags}
        assert {"adversarial", "injection", "pii", "access"} <= tags, dataset.name
        assert all(case.line for case in dataset.cases)


def test_skill_loading_ignores_datasets() -> None:
    """The spec loader skips *.eval.yaml, so datasets never break skill loading."""
    loaded = load_registry([], env={})
    assert not loaded.issues


def test_unknown_key_names_line_and_field() -> None:
    found = issues(
        """\
        skill: refunds
        cases:
          - id: one
            message: hi
            expect:
              trajectroy: []
        """
    )
    assert found == ["x.eval.yaml:6 cases[0].expect.trajectroy: unknown key"]


def test_missing_message_and_bad_mode() -> None:
    found = issues(
        """\
        skill: refunds
        cases:
          - id: one
            expect:
              trajectory: {mode: sideways, calls: []}
        """
    )
    assert any(i.startswith("x.eval.yaml:3 cases[0].message: required") for i in found), found
    assert any(i.startswith("x.eval.yaml:5 cases[0].expect.trajectory.mode:") for i in found)


def test_bad_regex_and_matcher_are_reported_where_they_are() -> None:
    found = issues(
        """\
        skill: refunds
        cases:
          - id: one
            message: hi
            expect:
              answer: {regex: ["(unclosed"]}
              trajectory:
                - {name: lookup_order, args: {order_id: {regex: "[z-a]"}}}
        """
    )
    assert any(i.startswith("x.eval.yaml:6 cases[0].expect.answer.regex:") for i in found)
    assert any(
        i.startswith("x.eval.yaml:8 cases[0].expect.trajectory.calls[0].args:")
        or i.startswith("x.eval.yaml:8 cases[0].expect.trajectory[0].args:")
        for i in found
    ), found


def test_duplicate_ids_keys_and_syntax_errors() -> None:
    assert any("used twice" in i for i in issues(
        """\
        skill: s
        cases:
          - {id: a, message: x}
          - {id: a, message: y}
        """
    ))  # fmt: skip
    assert issues("skill: s\nskill: t\ncases: [{id: a, message: x}]\n") == [
        "x.eval.yaml:2 skill: duplicate key 'skill'"
    ]
    assert issues("skill: [unclosed\n")[0].startswith("x.eval.yaml:2")
    assert issues("- just a list\n") == ["x.eval.yaml:1: expected a mapping"]


def test_expected_route_defaults_to_the_dataset_skill(tmp_path: Path) -> None:
    path = tmp_path / "refunds.eval.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            skill: refunds
            cases:
              - {id: a, message: x}
              - {id: b, message: x, expect: {route: ask}}
              - {id: c, message: x, expect: {route: false}}
              - {id: d, message: x, skill: digest}
            """
        )
    )
    dataset = load_dataset(path)
    routes = [dataset.expected_route(case) for case in dataset.cases]
    assert routes == ["refunds", "ask", None, "digest"]
    assert dataset.name == "refunds.eval.yaml" and dataset.cases[1].line == 4
