"""Digdag's YAML dialect: what plain yaml.safe_load gets wrong, duplicate keys, !include keys, lines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airflow_cmdexec_provider.dig import DigLoadError
from airflow_cmdexec_provider.dig.yaml_dialect import DigMap, FileLoader


def load(tmp_path: Path, text: str, name: str = "wf.dig") -> DigMap:
    path = tmp_path / name
    path.write_text(text)
    return FileLoader(path).load()


def load_error(tmp_path: Path, text: str, name: str = "wf.dig") -> DigLoadError:
    with pytest.raises(DigLoadError) as info:
        load(tmp_path, text, name)
    return info.value


def test_times_stay_strings_where_yaml_1_1_makes_numbers(tmp_path):
    text = "schedule:\n  daily>: 10:00:00\nh: 30:00\nm: 15:00\nzero: 02:00:00\n"
    assert yaml.safe_load(text)["schedule"]["daily>"] == 36000  # why a dialect is needed
    data = load(tmp_path, text)
    assert data["schedule"]["daily>"] == "10:00:00"
    assert (data["h"], data["m"], data["zero"]) == ("30:00", "15:00", "02:00:00")


def test_only_true_and_false_are_booleans(tmp_path):
    data = load(tmp_path, "a: [yes, no, on, off, y, n, true, false, True, False, TRUE]\n")
    assert data["a"] == ["yes", "no", "on", "off", "y", "n", True, False, True, False, "TRUE"]
    assert yaml.safe_load("a: [yes, on]")["a"] == [True, True]


def test_no_timestamps_and_numbers_as_digdag_reads_them(tmp_path):
    data = load(
        tmp_path,
        "d: 2016-01-01\nt: 2016-01-01 00:00:00\ni: 42\nneg: -7\noct: 010\nhex: 0x1f\n"
        "under: 1_000\nf: 1.5\nzero_start: 0.5\nexp: 1e3\nnull1: ~\nnull2: null\nempty:\n",
    )
    assert data["d"] == "2016-01-01"
    assert data["t"] == "2016-01-01 00:00:00"
    assert (data["i"], data["neg"], data["oct"], data["hex"], data["under"]) == (42, -7, 8, 31, 1000)
    assert (data["f"], data["exp"]) == (1.5, 1000.0)
    assert data["zero_start"] == "0.5"  # Digdag's float pattern does not start with 0
    assert data["null1"] is None
    assert data["null2"] is None
    assert data["empty"] is None


def test_duplicate_keys_are_an_error_with_the_line(tmp_path):
    error = load_error(tmp_path, "+a:\n  sh>: echo 1\n+b:\n  sh>: echo 2\n+a:\n  sh>: echo 3\n")
    assert "wf.dig, line 5" in str(error)
    assert "duplicate key '+a'" in str(error)
    assert yaml.safe_load("a: 1\na: 2\n") == {"a": 2}  # what plain PyYAML does silently


def test_include_as_a_key_merges_the_file_deeply_in_place(tmp_path):
    (tmp_path / "part.dig").write_text("+step:\n  sh>: echo from part\n_export:\n  db: {host: h, port: 1}\n")
    data = load(
        tmp_path,
        "+group:\n  _export:\n    db: {user: u}\n  !include : part.dig\n  +after:\n    sh>: echo x\n",
    )
    group = data["+group"]
    assert list(group) == ["_export", "+step", "+after"]
    assert group["_export"] == {"db": {"user": "u", "host": "h", "port": 1}}
    assert group.where("+step") == (tmp_path / "part.dig", 1)  # included keys keep their own file and line
    assert group.where("+after") == (tmp_path / "wf.dig", 5)


def test_two_includes_in_one_mapping_are_not_duplicates(tmp_path):
    (tmp_path / "a.dig").write_text("+a:\n  sh>: echo a\n")
    (tmp_path / "b.dig").write_text("+b:\n  sh>: echo b\n")
    assert list(load(tmp_path, "+g:\n  !include : a.dig\n  !include : b.dig\n")["+g"]) == ["+a", "+b"]


def test_include_errors_name_the_file_and_line(tmp_path):
    outside = load_error(tmp_path, "+g:\n  !include : ../elsewhere.dig\n")
    assert "wf.dig, line 2" in str(outside)
    assert "must be inside" in str(outside)
    missing = load_error(tmp_path, "+g:\n  x: 1\n  !include : nothing.dig\n")
    assert "line 3" in str(missing)
    assert "does not exist" in str(missing)
    (tmp_path / "loop.dig").write_text("+g:\n  !include : wf.dig\n")
    recursive = load_error(tmp_path, "+h:\n  !include : loop.dig\n")
    assert "includes itself" in str(recursive)
    assert "loop.dig, line 2" in str(recursive)
    as_value = load_error(tmp_path, "+g: !include part.dig\n")
    assert "line 1" in str(as_value)
    assert "!include works only as a key" in str(as_value)


def test_syntax_errors_and_non_mappings_name_the_line(tmp_path):
    error = load_error(tmp_path, "+a:\n  sh>: echo 1\n +b: [\n")
    assert "wf.dig, line" in str(error)
    assert "YAML" in str(error)
    assert "must be a YAML mapping" in str(load_error(tmp_path, "- a\n- b\n"))
    assert "Digdag knows no such YAML tag" in str(load_error(tmp_path, "a: !custom x\n"))


# -- Digdag's early brace format (Hjson) ---------------------------------------------------------
BRACES = """timezone: Asia/Tokyo   # a note after the value

_export: {
  region: "ap-northeast-1"
  retries: 3
}

+first: {
  sh>: echo "first in ${region}"
}

+group: {
  _parallel: true
  +a: {
    echo>: a ${session_date}
  }
  +b: {
    emr>: cluster
  }
}
"""


def test_the_early_brace_format_loads_with_its_lines(tmp_path):
    path = tmp_path / "braces.dig"
    path.write_text(BRACES.replace("emr>: cluster", "echo>: b"))
    loaded = FileLoader(path).load()
    assert loaded["timezone"] == "Asia/Tokyo"  # the " # note" is a comment, as in YAML
    assert loaded["_export"] == {"region": "ap-northeast-1", "retries": 3}
    assert loaded["+first"]["sh>"] == 'echo "first in ${region}"'
    assert loaded["+group"]["_parallel"] is True
    assert loaded.where("+group") == (path, 12)
    assert loaded["+group"].where("+b") == (path, 17)
    assert loaded["+group"]["+b"].where("echo>") == (path, 18)


def test_a_problem_in_the_brace_format_names_its_line(tmp_path):
    from airflow_cmdexec_provider.dig import load_project

    (tmp_path / "braces.dig").write_text(BRACES)
    with pytest.raises(DigLoadError) as info:
        load_project(tmp_path)
    assert "braces.dig, line 18: emr>: not part of Digdag's Command Executor" in str(info.value)


def test_the_brace_format_refuses_duplicate_keys_and_yaml_errors_stay_yaml_errors(tmp_path):
    path = tmp_path / "twice.dig"
    path.write_text("+a: {\n  echo>: one\n  echo>: two\n}\n")
    with pytest.raises(DigLoadError, match="duplicate key 'echo>'"):
        FileLoader(path).load()
    broken = tmp_path / "broken.dig"
    broken.write_text("+a:\n  echo>: [unclosed\n")
    with pytest.raises(DigLoadError, match="YAML: invalid workflow definition"):
        FileLoader(broken).load()
