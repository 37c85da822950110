"""The command line as a newcomer meets it: fast help, the shipped heads, convert's --force, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_head_files import write_published

from readout_core import cpu_threads
from readout_core.__main__ import TINY_HEADS, main as cli_main
from readout_core.tiny_world import HEAD_FILES, evaluate

REPO = Path(__file__).resolve().parents[1]
TINY_DEPTH = REPO / TINY_HEADS / HEAD_FILES["depth"]


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "readout_core", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["train", "--help"], ["info", "--help"],
                                  ["convert", "--help"]])
def test_help_does_not_import_torch(argv):
    code = ("import sys\nfrom readout_core.__main__ import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as exit:\n    print('exit', exit.code)\n"
            "print('heavy:', sorted(m for m in ('torch', 'numpy', 'safetensors', 'PIL') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m readout_core" in result.stdout
    assert result.stdout.rstrip().endswith("exit 0\nheavy: []")


def test_help_as_the_readme_runs_it():
    result = _run("--help")
    assert result.returncode == 0 and "OMP_NUM_THREADS" in result.stdout
    for command in ("demo", "train", "info", "convert"):
        assert command in result.stdout


def test_info_on_a_shipped_tiny_world_head(capsys):
    result = _run("info", f"{TINY_HEADS}/{HEAD_FILES['depth']}")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.startswith(("kind", "layers")))
    assert lines == {"kind": "spatial", "layers": "12: dims [64, 64, 64, 64, 64, 64, 32, 32, 32, 32, 32, 32]"}
    assert cli_main(["info", "--json", str(REPO / TINY_HEADS / HEAD_FILES["appearance"])]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "appearance" and summary["layers"] == 12 and summary["parameters"] > 10_000


def test_convert_refuses_to_overwrite_without_force(tmp_path, capsys):
    src = tmp_path / "readout_sdv15_spatial_depth.pt"
    write_published(src, control_type="depth")
    dst = tmp_path / "depth.safetensors"
    dst.write_bytes(b"keep me")
    assert cli_main(["convert", str(src), str(dst)]) == 2
    assert capsys.readouterr().err == f"error: {dst} already exists; add --force to overwrite it, or choose another name.\n"
    assert dst.read_bytes() == b"keep me"
    assert cli_main(["convert", "--force", str(src), str(dst)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {dst}: ")
    assert cli_main(["info", "--json", str(dst)]) == 0
    assert json.loads(capsys.readouterr().out)["control_type"] == "depth"


def test_convert_exit_codes_as_a_subprocess(tmp_path):
    src = tmp_path / "readout_sdv15_spatial_edge.pt"
    write_published(src, control_type="edge")
    dst = tmp_path / "edge.safetensors"
    dst.write_bytes(b"keep me")
    refused = _run("convert", str(src), str(dst))
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr and dst.read_bytes() == b"keep me"


def test_convert_on_a_shipped_head_or_without_a_destination(tmp_path, capsys):
    assert cli_main(["convert", str(TINY_DEPTH), str(tmp_path / "tiny.safetensors")]) == 2
    assert "convert reads a published .pt head" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", str(TINY_DEPTH)])
    assert exit_info.value.code == 2 and "the following arguments are required: destination" in capsys.readouterr().err


def test_commands_choose_the_thread_count(monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.delenv(cpu_threads.OVERRIDE_VARIABLE, raising=False)
    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: 3)
    monkeypatch.setattr(cpu_threads, "busy_cores", lambda: 2)
    try:
        assert cli_main(["info", str(TINY_DEPTH)]) == 0
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(cpu_threads, "busy_cores", lambda: 0)
        assert cli_main(["info", str(TINY_DEPTH)]) == 0
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert capsys.readouterr().out.count("kind") == 2


def test_readme_examples_use_shipped_heads_and_leave_only_ignored_files():
    readme = (REPO / "README.md").read_text()
    shipped = re.findall(r"python -m readout_core info (?:--json )?(readout_core/\S+)", readme)
    assert len(shipped) == 2 and all((REPO / path).is_file() for path in shipped)
    written = {"readout_demo.png", *re.findall(r"--(?:out|checkpoints|cache) ([a-z][\w./-]*\w)", readme),
               *re.findall(r"readout_core convert \S+ (\S+)", readme), *re.findall(r"curl -LO \S+/(\S+)", readme)}
    assert {"readout_demo_seed3.png", "readout_sdv15_spatial_depth.pt", "runs/my_depth"} <= written
    ignored = [line for line in (REPO / ".gitignore").read_text().splitlines() if line.startswith("/")]
    for name in written:
        assert any(fnmatch(f"/{name}", rule) or f"/{name}".startswith(rule) for rule in ignored), name


class _FakeWorld:
    """Stands in for the tiny world: measure = seed, guided better on even seeds."""

    def __getattr__(self, experiment: str):
        def run(seed: int) -> SimpleNamespace:
            better = seed % 2 == 0
            guided = seed + 1 if (experiment == "spatial") == better else seed - 1
            return SimpleNamespace(measure_unguided=float(seed), measure_guided=float(guided))
        return run


def test_evaluation_reports_progress_and_the_table(monkeypatch, capsys):
    monkeypatch.setattr(evaluate, "TinyWorld", _FakeWorld)
    calls = []
    results = evaluate.evaluate(2, lambda done, total, note: calls.append((done, total, note)))
    assert calls == [(0, 6, "spatial, seed 0"), (1, 6, "spatial, seed 1"), (2, 6, "drag, seed 0"),
                     (3, 6, "drag, seed 1"), (4, 6, "appearance, seed 0"), (5, 6, "appearance, seed 1"),
                     (6, 6, "done")]
    assert results["drag"] == ([0.0, 1.0], [-1.0, 2.0])
    evaluate.main(["--seeds", "4"])
    captured = capsys.readouterr()
    assert "] runs 12/12  done" in captured.err and "appearance, seed 3" in captured.err
    assert "| drag | distance to target (px) (lower is better) | 1.500 | 1.500 | 2/4 |" in captured.out
    assert captured.out.rstrip().splitlines()[-1].startswith("4 seeds, 0 s on ")


def test_evaluation_help_and_bad_seed_counts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0 and "`" not in help_text
    assert re.search(r"--seeds N\s+how many seeds to run", help_text)
    for bad in ("0", "-3", "two"):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(["--seeds", bad])
        assert exit_info.value.code == 2
        assert f"error: argument --seeds: needs a whole number of at least 1, not '{bad}'" in capsys.readouterr().err
