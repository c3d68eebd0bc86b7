"""The package's shape: imports run one way (import-linter's contracts in pyproject.toml) and no module reaches into
another's private names."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "src" / "sandbag").rglob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py")),
           *sorted((ROOT / "tests").glob("*.py"))]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "src") if "src" in path.parts else path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(path: Path, module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against the file's package)."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def private_imports(path: Path, module: str | None = None) -> list[str]:
    """`from sandbag.x import _name` (or `from .x import _name`), and `mod._name` on an imported sandbag module,
    anywhere in `path` (the source of `module`) but inside the module that defines the name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module or _module_name(path)
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(path, here, node)
            if not source.startswith("sandbag") or source == here:
                continue
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{path.name}:{node.lineno}: from {source} import {alias.name}")
                else:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sandbag"):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_names():
    offenders = [line for path in SOURCES for line in private_imports(path)]
    assert not offenders, "private names used across modules:\n" + "\n".join(offenders)


def test_the_checker_catches_a_private_import(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("from .train import _hidden\nfrom . import data as d\nd._cache\nfrom .train import fit\n"
                   "from .probe import _own\n")
    found = [line.split(": ", 1)[1] for line in private_imports(bad, module="sandbag.probe")]
    assert found == ["from sandbag.train import _hidden", "d._cache"]


def test_import_contracts_hold():
    """lint-imports (import-linter) over the layers and forbidden contracts in pyproject.toml."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("import-linter is not installed: pip install -e '.[dev]'")
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_training_on_mnist_5k_imports_neither_scipy_nor_sklearn():
    """Each costs ~0.5-1 s at import: a sixth of a short `sandbag train` process, and once in every study worker.
    Only the report's statistics (scipy) and the digits data set (sklearn) need them."""
    code = (
        "import sys\n"
        "from sandbag import cli, train\n"
        "cli.build_parser()\n"
        "from sandbag.study import executors, config\n"
        "train.fit(train.RunConfig(epochs=1, train_size=100, batch_size=50, threads=1))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'sklearn'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
