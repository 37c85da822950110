"""The pack's layout, metadata and the core's independence from the host."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST_MODULES = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes", "execution", "server", "comfy_execution"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "host_adapter":
            roots.add("host_adapter")
    return roots


def test_layout_of_the_design_card():
    for name in ("__init__.py", "nodes", "readout_core", "web", "example_workflows", "tests", "requirements.txt",
                 "pyproject.toml", "LICENSE", "README.md", ".ci/run"):
        assert (REPO / name).exists(), name


def test_only_the_diffusers_adapter_imports_diffusers():
    adapter = REPO / "readout_core" / "diffusers_adapter"
    assert (adapter / "__init__.py").read_text().startswith('"""DIFFUSERS ADAPTER')
    importers = sorted(str(path.relative_to(REPO)) for path in (REPO / "readout_core").rglob("*.py")
                       if "diffusers" in _imported_roots(path))
    assert importers and all(name.startswith("readout_core/diffusers_adapter/") for name in importers), importers


def test_every_core_sub_package_says_what_lives_there():
    for package in sorted(p.parent for p in (REPO / "readout_core").rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert docstring and len(docstring.split()) >= 15, f"{package.name}/__init__.py needs a docstring"
        modules = {p.stem for p in package.glob("*.py")} - {"__init__", "__main__"}
        if package.name != "readout_core":
            missing = sorted(m for m in modules if f"`{m}`" not in docstring)
            assert not missing, f"{package.name}/__init__.py does not name {missing}"


def test_core_imports_no_host_and_only_the_adapter_knows_it():
    adapter = REPO / "readout_core" / "host_adapter"
    assert (adapter / "__init__.py").read_text().startswith('"""HOST ADAPTER')
    for path in sorted((REPO / "readout_core").rglob("*.py")):
        roots = _imported_roots(path)
        if adapter in path.parents:
            continue
        assert not roots & HOST_MODULES, f"{path.name} imports the host: {roots & HOST_MODULES}"
        assert "host_adapter" not in roots, f"{path.name} imports the host adapter"
    code = (
        "import sys, readout_core, readout_core.__main__; from readout_core import *; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(HOST_MODULES | {'diffusers'})!r} or m.startswith('readout_core.host_adapter')); print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_pack_entry_imports_without_the_host():
    spec = importlib.util.spec_from_file_location("readout_pack_entry", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.WEB_DIRECTORY == "./web"
    assert callable(module.comfy_entrypoint)
    assert "NODE_CLASS_MAPPINGS" not in vars(module)  # the host would then ignore comfy_entrypoint


def test_requirements_leave_torch_to_the_host():
    runtime = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    runtime = [line for line in runtime if line]
    assert runtime and not any(line.lower().startswith("torch") for line in runtime)
    test_reqs = (REPO / "requirements-test.txt").read_text()
    assert "-r requirements.txt" in test_reqs and "pytest" in test_reqs and "diffusers" in test_reqs


def test_registry_metadata():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    project, comfy = meta["project"], meta["tool"]["comfy"]
    assert project["name"] and project["version"].count(".") == 2
    assert project["license"] == {"file": "LICENSE"}
    assert "Repository" in project["urls"]
    assert comfy["PublisherId"] and comfy["DisplayName"] == "Readout Guidance"
    assert comfy["requires-comfyui"].startswith(">=")
    runtime = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert project["dependencies"] == runtime
