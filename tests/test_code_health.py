"""bench/code_health.py counts what it says on a small package built here with known defects."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("radon")
HERE = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("code_health", HERE / "bench" / "code_health.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def project(tmp_path):
    pkg = tmp_path / "hoi_cli"
    write(pkg / "__init__.py", "")
    write(pkg / "stages" / "__init__.py", "")
    # a <-> b only through an in-function import; c -> a at top level; stages.detect owns 01_detect
    write(pkg / "a.py", """\
        from . import b


        def used():
            return b.helper()


        def never_called():
            return "00_frames"  # a stage literal outside stages/frames.py
    """)
    write(pkg / "b.py", """\
        def helper():
            from .a import used  # hides the cycle a <-> b

            return used
    """)
    long_body = "\n".join(f"    x{i} = {i}" for i in range(85))
    branches = "\n".join(f"    if n == {i}:\n        return {i}" for i in range(12))
    write(pkg / "stages" / "detect.py", f'''\
        import typer

        app = typer.Typer()
        NAME = "01_detect"


        @app.command()
        def registered():
            return NAME


        def long_one():
{textwrap.indent(long_body, "        ")}
            return x0


        def branchy(n):
{textwrap.indent(branches, "        ")}
            return -1
    ''')
    write(tmp_path / "tests" / "test_x.py", "from hoi_cli.stages.detect import long_one, branchy\n")
    return pkg


def test_counts_on_a_known_package(project, capsys):
    tool = load_tool()
    result = tool.measure(project)
    counts, details = result["counts"], result["details"]
    assert counts["functions_over_80_lines"] == 1 and details["long_functions"][0]["function"] == "long_one"
    assert counts["complexity_over_10"] == 1 and details["complex_functions"][0]["complexity"] == 13
    assert counts["infunction_imports"] == 1 and details["infunction_imports"][0]["where"] == "hoi_cli.b:2"
    assert details["import_cycles"] == [["hoi_cli.a", "hoi_cli.b"]]
    assert counts["import_cycles_toplevel"] == 0  # the cycle exists only through the function body
    assert [d["literal"] for d in details["stage_literals"]] == ["00_frames"]  # 01_detect is owned
    assert counts["stage_literals_in_code_strings"] == 1
    # never_called is dead; the typer command (registered by its decorator) and the tested ones are not
    assert [d["symbol"] for d in details["dead_symbols"]] == ["never_called"]
    assert tool.main([str(project), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == counts


def test_a_folder_without_init_is_a_one_line_error(tmp_path, capsys):
    assert load_tool().main([str(tmp_path)]) == 2
    assert "no __init__.py" in capsys.readouterr().err
