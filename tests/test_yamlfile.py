"""The one YAML loader of the product's files: a person's mistakes become clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.yamlfile import YamlFileError, load_yaml


def _load(tmp_path: Path, content: bytes) -> object:
    path = tmp_path / "f.yaml"
    path.write_bytes(content)
    return load_yaml(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"ami:\n  port: 5039\n  host: pbx\n  port: 5040\n",
            "f.yaml: line 4, column 3: duplicate key 'port' (first given on line 2); keep only one",
        ),
        (b"ami: {}\ndatabase: {}\nami: {}\n", "line 3, column 1: duplicate key 'ami' (first"),
        (b"ami: {port: 1, port: 2}\n", "line 1, column 16: duplicate key 'port'"),
        (b"ami:\n  username: Jos\xe9\n", "f.yaml: line 2: not UTF-8 text (byte 0xe9 at offset"),
        (b"ami: [1, 2\n", "f.yaml: line 2, column 1: not valid YAML: expected ','"),
    ],
)
def test_mistakes_name_the_file_the_line_and_the_problem(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    with pytest.raises(YamlFileError) as err:
        _load(tmp_path, content)
    assert expected in str(err.value)
    assert not err.value.unreadable


def test_merge_keys_may_still_be_overridden_and_a_bom_is_fine(tmp_path: Path) -> None:
    text = b"base: &b {x: 1, y: 2}\nq:\n  <<: *b\n  x: 3\n"
    assert _load(tmp_path, text) == {"base": {"x": 1, "y": 2}, "q": {"x": 3, "y": 2}}
    assert _load(tmp_path, b"\xef\xbb\xbfa: 1\n") == {"a": 1}
    assert _load(tmp_path, b"") is None


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with pytest.raises(YamlFileError, match=r"nope\.yaml: cannot read the queues file") as err:
        load_yaml(tmp_path / "nope.yaml", "queues file")
    assert err.value.unreadable


def test_only_plain_data_is_built(tmp_path: Path) -> None:
    with pytest.raises(YamlFileError, match="not valid YAML"):
        _load(tmp_path, b"x: !!python/object/apply:os.system ['true']\n")


def test_a_validation_error_is_told_per_key_with_its_fix() -> None:
    from pydantic import BaseModel, ConfigDict, ValidationError

    from cti.yamlfile import explain_invalid

    class Lane(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str
        seconds: int

    try:
        Lane.model_validate({"seconds": "soon", "colour": "red"})
    except ValidationError as exc:
        error = exc
    told = explain_invalid(error, "lanes.yaml", "lane settings")
    assert told.splitlines() == [
        "invalid lane settings:",
        "  lanes.yaml: key 'name' is missing; add it",
        "  lanes.yaml: key 'seconds': Input should be a valid integer, unable to parse string "
        "as an integer (got 'soon')",
        "  lanes.yaml: key 'colour' is not a setting; check its spelling",
    ]
    # A domain may tell an error its own way.
    own = explain_invalid(error, "lanes.yaml", "lane settings",
                          lambda err: ["mine"] if err["type"] == "missing" else None)  # fmt: skip
    assert own.splitlines()[1] == "  mine"
