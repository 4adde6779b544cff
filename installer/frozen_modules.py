"""The viewer's modules a frozen bundle must carry, whether or not an import statement names them.

PyInstaller follows import statements. A registry that imports its members by name
(``importlib.import_module(f"{__name__}.{name}")`` over a list of names: the annotation formats)
hides them from it, and a bundle without them fails at its first start (``No module named
'viewer.io.annotation_formats.phantom_json'``). So the spec takes:

- every module of the ``viewer`` package, found from its source files: what
  ``collect_submodules("viewer")`` finds, but without importing anything in the build environment
  (where an import that fails, such as torchvision's beside CPU torch, would make
  ``collect_submodules`` drop a whole subtree with a warning);
- the modules each registry names, read from the registry's own list, so a name listed without
  its module stops the build instead of the app.

Plain Python, no PyInstaller: ``installer/saliency_viewer.spec`` and the tests import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "viewer"


class RegistryError(RuntimeError):
    """A by-name import this module cannot resolve to module names (so cannot bundle)."""


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> list[str]:
    """Every module and subpackage of ``package``, from the ``.py`` files under it."""
    return [_dunder_name(path, root) for path in _sources(root, package)]


def _sources(root: Path, package: str) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)


def _dunder_name(path: Path, root: Path) -> str:
    """The module's ``__name__`` (a package's ``__init__.py``: the package's)."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_module_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and node.args
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
        )
    ]


def _string_lists(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level names bound to a tuple or list of string constants."""
    lists = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple | ast.List):
            items = node.value.elts
            if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in items):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        lists[target.id] = [e.value for e in items]
    return lists


def registry_imports(root: Path = ROOT, package: str = PACKAGE) -> dict[str, list[str]]:
    """Registry module -> the modules it imports by name, read from its own list of names.

    A registry is a loop at module level over a module-level list of names,
    ``for name in NAMES: importlib.import_module(f"{__name__}.{name}")``; an import of a constant
    ``"viewer.x.y"`` counts too. Any other by-name import of the package's own modules raises
    :class:`RegistryError`, naming the file and line, as the bundle could not be checked for it.
    By-name imports of other libraries (the optional model families) are no registry of the
    viewer's and are left to PyInstaller's hooks.
    """
    registries: dict[str, list[str]] = {}
    for path in _sources(root, package):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = _dunder_name(path, root)
        lists = _string_lists(tree)
        read: set[int] = set()
        for loop in tree.body:
            if not (
                isinstance(loop, ast.For)
                and isinstance(loop.target, ast.Name)
                and isinstance(loop.iter, ast.Name)
                and loop.iter.id in lists
            ):
                continue
            for call in _import_module_calls(loop):
                if ast.unparse(call.args[0]) in (
                    f"f'{{__name__}}.{{{loop.target.id}}}'",
                    f'f"{{__name__}}.{{{loop.target.id}}}"',
                ):
                    registries.setdefault(module, []).extend(f"{module}.{n}" for n in lists[loop.iter.id])
                    read.add(id(call))
        for call in _import_module_calls(tree):
            arg, text = call.args[0], ast.unparse(call.args[0])
            if id(call) in read:
                continue
            if isinstance(arg, ast.Constant) and text.strip("'\"").startswith(f"{package}."):
                registries.setdefault(module, []).append(arg.value)
            elif "__name__" in text or "__package__" in text or f"{package}." in text:
                raise RegistryError(
                    f"{path.relative_to(root)}:{call.lineno}: {ast.unparse(call)} imports the "
                    "viewer's own modules by a name installer/frozen_modules.py cannot read; "
                    "import them from a module-level list of names: for name in NAMES: "
                    'importlib.import_module(f"{__name__}.{name}")'
                )
    return registries


def hidden_imports(root: Path = ROOT, package: str = PACKAGE) -> list[str]:
    """Every module of the package, checked against what its registries import by name."""
    modules = package_modules(root, package)
    missing = sorted(
        f"{name} (listed by {registry})"
        for registry, names in registry_imports(root, package).items()
        for name in names
        if name not in modules
    )
    if missing:
        raise RegistryError("registries name modules that do not exist: " + ", ".join(missing))
    return modules


# --- the bundled models and the libraries they need ------------------------------------------


def _pyproject(root: Path) -> dict:
    import tomllib

    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))


def bundled_model_dirs(root: Path = ROOT) -> list[Path]:
    """Every folder of ``models/`` with a ``manifest.toml``, less those pyproject's wheel
    ``exclude`` list names (``/models/<folder>``): the models a wheel and the frozen app carry."""
    wheel = _pyproject(root)["tool"]["hatch"]["build"]["targets"]["wheel"]
    left_out = {Path(e).name for e in wheel["exclude"] if e.startswith("/models/") and "*" not in e}
    manifests = (root / "models").glob("*/manifest.toml")
    return sorted(p.parent for p in manifests if p.parent.name not in left_out)


def model_extras(root: Path = ROOT) -> dict[str, list[str]]:
    """The optional-dependency extras the bundled models' ``network.arch`` families need
    (``"monai:UNet"`` -> ``monai``), each with its requirements from pyproject. A bundle that
    carries a model must carry the library that builds it: the frozen app has no pip."""
    import tomllib

    extras = _pyproject(root)["project"]["optional-dependencies"]
    needed: dict[str, list[str]] = {}
    for folder in bundled_model_dirs(root):
        arch = tomllib.loads((folder / "manifest.toml").read_text(encoding="utf-8"))["network"]["arch"]
        family = arch.split(":", 1)[0]
        if family in extras:
            needed[family] = list(extras[family])
    return needed


def extra_packages(root: Path = ROOT) -> list[str]:
    """The top-level modules the bundled models' extras provide, read from the viewer's own
    ``EXTRAS`` table (module -> extra) in ``viewer/inference/architectures.py``; the spec collects
    their submodules, as these libraries import much of themselves by name."""
    source = root / PACKAGE / "inference" / "architectures.py"
    table: dict[str, str] = {}
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXTRAS" for t in node.targets):
            table = ast.literal_eval(node.value)
    needed = model_extras(root)
    return sorted(module for module, extra in table.items() if extra in needed)
