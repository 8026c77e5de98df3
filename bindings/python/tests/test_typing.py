"""Typing (issue 13, item 16): the stubs of the C extension ship with the package and
say what it has; the typed user script (typing_user.py, which ``make test-python``
also checks with ``mypy --strict``) runs."""

from __future__ import annotations

import ast
import pathlib
import sys

import libqueue
from libqueue import _fast

PKG = pathlib.Path(libqueue.__file__).parent


def _stub() -> ast.Module:
    path = PKG / "_fast.pyi"
    assert path.is_file(), "the _fast stubs are not installed with the package"
    return ast.parse(path.read_text())


def test_package_is_typed():
    assert (PKG / "py.typed").is_file()


def test_fast_stub_matches_the_extension():
    tree = _stub()
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    names = {n.target.id for n in tree.body
             if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    public = {n for n in dir(_fast) if not n.startswith("__")}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assert functions | names | set(classes) == public
    stub_members = set()
    for node in classes["Delivery"].body:
        if isinstance(node, ast.FunctionDef):
            stub_members.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub_members.add(node.target.id)
    c_members = {n for n in vars(_fast.Delivery) if not n.startswith("__")} | {"__init__"}
    assert stub_members == c_members


def test_typed_user_script_runs():
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    try:
        import typing_user
    finally:
        sys.path.pop(0)
    out = typing_user.run()
    assert out[0] == "sent 1 [2, 3, 4]"
    assert "x1resize" in out and "handled 1" in out and "shut down" in out
