"""python/stackless.pyi, the type stubs that `pip install` installs, against the module itself:
every name the stubs declare exists, and every public name of the module and of its classes is
declared. With mypy installed (Debian: python3-mypy), mypy.stubtest checks the signatures too."""
import ast
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

import stackless

STUB = pathlib.Path(__file__).resolve().parents[2] / "python" / "stackless.pyi"
# The module's attributes that are properties of its type, not entries of its __dict__.
MODULE_PROPERTIES = {"current", "main", "runcount", "threads", "debug", "uncollectables",
                     "pickle_with_tracing_state"}


def stub_tree():
    return ast.parse(STUB.read_text(), filename=str(STUB))


def declared(body):
    """Names bound by the statements of a module or class body in a stub (type aliases, whose
    names start with an underscore, are the stubs' own)."""
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if not (node.target.id.startswith("_") and isinstance(node.annotation, ast.Name)
                    and node.annotation.id == "TypeAlias"):
                names.add(node.target.id)
    return names


def classes():
    return {node.name: node for node in stub_tree().body if isinstance(node, ast.ClassDef)}


def public(names):
    return {n for n in names if not n.startswith("_")}


def test_the_stubs_declare_the_module_names():
    in_stub = declared(stub_tree().body)
    at_runtime = set(dir(stackless)) | MODULE_PROPERTIES
    assert sorted(in_stub - at_runtime) == [], "declared in the stubs, absent from the module"
    assert sorted(public(at_runtime) - in_stub) == [], "in the module, missing from the stubs"


@pytest.mark.parametrize("name", sorted(classes()))
def test_the_stubs_declare_the_class_members(name):
    cls = getattr(stackless, name)
    in_stub = declared(classes()[name].body)
    assert sorted(n for n in in_stub if not hasattr(cls, n)) == [], \
        "declared in the stubs, absent from stackless.%s" % name
    base_names = set().union(*(dir(base) for base in cls.__mro__[1:]))
    own = public(set(dir(cls)) - base_names)
    assert sorted(own - in_stub) == [], "in stackless.%s, missing from the stubs" % name


def test_stubtest_agrees(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (Debian: python3-mypy)")
    path = [os.path.dirname(stackless.__file__)]
    path += os.environ.get("PYTHONPATH", "").split(os.pathsep)
    env = dict(os.environ, MYPYPATH=str(STUB.parent), MYPY_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(p for p in path if p))
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "stackless"], capture_output=True,
                       text=True, env=env, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
