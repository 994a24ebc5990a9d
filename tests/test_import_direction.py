"""Imports run one way: no library module imports ``equidmri.cli`` or ``equidmri.bench``."""

import ast
from pathlib import Path

import pytest

import equidmri

PACKAGE = Path(equidmri.__file__).parent
LIBRARY = (
    "sphere",
    "nn",
    "dmri",
    "recon",
    "sims",
    "eval",
    "viz",
    "methods",
    "microstructure",
    "synth",
    "denoise",
    "harmonize",
    "lesions",
    "data.py",
    "runtime.py",
    "extras.py",
    "lazy.py",
    "__init__.py",
)
FORBIDDEN = ("equidmri.cli", "equidmri.bench")
LOWER_LAYERS = {  # package -> the packages it must not import (cli -> methods -> recon -> nn, dmri -> sphere)
    "sphere": ("equidmri.nn", "equidmri.dmri", "equidmri.recon", "equidmri.methods"),
    "nn": ("equidmri.dmri", "equidmri.recon", "equidmri.methods"),
    "dmri": ("equidmri.nn", "equidmri.recon", "equidmri.methods"),
    "recon": ("equidmri.methods",),
}


def imported_modules(source: str, package: str) -> list[str]:
    """Every module an ``import`` or ``from ... import`` statement of ``source`` names, relative imports resolved
    against ``package`` (the dotted package of the file)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def library_files() -> list[Path]:
    files = []
    for entry in LIBRARY:
        path = PACKAGE / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_the_walk_sees_every_library_package():
    seen = {path.relative_to(PACKAGE).parts[0] for path in library_files()}
    assert seen == set(LIBRARY)
    assert len(library_files()) > 50


@pytest.mark.parametrize(
    "source",
    [
        "from ..cli import common",
        "import equidmri.bench.report",
        "from equidmri import cli",
        "from ...bench import table",
    ],
)
def test_the_walk_catches_an_upward_import(source):
    package = "equidmri.nn.layers" if source.startswith("from ...") else "equidmri.nn"
    assert any(name.startswith(FORBIDDEN) for name in imported_modules(source, package))


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_module_imports_neither_cli_nor_bench(path):
    package = ".".join(("equidmri", *path.relative_to(PACKAGE).parts[:-1]))
    names = imported_modules(path.read_text(encoding="utf-8"), package)
    upward = [name for name in names if name.startswith(FORBIDDEN)]
    assert not upward, f"{path.relative_to(PACKAGE)} imports {upward}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "bench").rglob("*.py")), ids=lambda p: p.name)
def test_bench_modules_do_not_import_cli(path):
    package = ".".join(("equidmri", *path.relative_to(PACKAGE).parts[:-1]))
    upward = [
        name for name in imported_modules(path.read_text(encoding="utf-8"), package) if name.startswith("equidmri.cli")
    ]
    assert not upward, f"{path.relative_to(PACKAGE)} imports {upward}"


@pytest.mark.parametrize(
    "path",
    [path for path in library_files() if path.relative_to(PACKAGE).parts[0] in LOWER_LAYERS],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_lower_layers_do_not_import_higher_ones(path):
    layer = path.relative_to(PACKAGE).parts[0]
    package = ".".join(("equidmri", *path.relative_to(PACKAGE).parts[:-1]))
    names = imported_modules(path.read_text(encoding="utf-8"), package)
    upward = [name for name in names if name.startswith(LOWER_LAYERS[layer])]
    assert not upward, f"{path.relative_to(PACKAGE)} imports {upward}"
