"""`pip install --no-build-isolation .` in a virtual environment, offline, as a user would:

    /usr/bin/python3 -m venv --system-site-packages VENV
    VENV/bin/pip install --no-build-isolation --no-index REPO

then the installed module imports from outside the repository, the `stackless` command runs
the article's Listing 2 as the ./stackless launcher does, and the type stubs are installed.

The build (setup.py) runs CMake in build/pip, which it keeps: the first run compiles the module
(up to a minute on two cores), later runs only what changed. Skipped if Debian's python3-venv,
python3-pip or python3-setuptools is missing.
"""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python"
STUB = ROOT / "python" / "stackless.pyi"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's CPython 3.11, which the module is built for

# What the install needs besides the compiler and libraries, by the Debian package providing it.
NEEDED_MODULES = {
    "venv": "python3-venv",
    "ensurepip": "python3-venv",
    "pip": "python3-pip",
    "setuptools": "python3-setuptools",
    "wheel": "python3-wheel (with python3-pip)",
}


def clean_env(**extra):
    """The environment of a user's shell: not the launcher's PYTHONPATH (which would import the
    module built in build/release instead of the installed one), no pip configuration (no
    index, no find-links: only what is on this machine)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "STACKLESS_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    env.update(extra)
    return env


def missing_requirements():
    """Why the test cannot run here, or None."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return "%s is missing (Debian's python3)" % SYSTEM_PYTHON
    if shutil.which("cmake") is None:
        return "cmake is not on PATH"
    probe = ("import importlib.util, sys\n"
             "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))")
    r = subprocess.run([SYSTEM_PYTHON, "-c", probe] + list(NEEDED_MODULES), capture_output=True,
                       text=True, env=clean_env(), timeout=60)
    missing = r.stdout.split()
    if r.returncode != 0 or missing:
        packages = sorted({NEEDED_MODULES[m] for m in missing})
        return ("%s cannot import %s: install %s (apt-get install python3-venv python3-pip "
                "python3-setuptools)" % (SYSTEM_PYTHON, ", ".join(missing) or "?",
                                         ", ".join(packages) or r.stderr.strip()))
    return None


_why_not = missing_requirements()
pytestmark = pytest.mark.skipif(_why_not is not None, reason=str(_why_not))


def run(args, *, timeout=120, **kwargs):
    kwargs.setdefault("env", clean_env())
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def describe(r):
    return "command: %s\nexit status %d\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(r.args), r.returncode, r.stdout[-5000:], r.stderr[-5000:])


class Venv:
    def __init__(self, path):
        self.path = path
        self.python = path / "bin" / "python"
        self.command = path / "bin" / "stackless"
        r = run([self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"])
        assert r.returncode == 0, describe(r)
        self.site_packages = pathlib.Path(r.stdout.strip())


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A virtual environment with the package installed from the repository, offline."""
    path = tmp_path_factory.mktemp("venv")
    r = run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", path])
    assert r.returncode == 0, describe(r)
    r = run([path / "bin" / "python", "-m", "pip", "install", "--no-build-isolation",
             "--no-index", ROOT], timeout=900, cwd=str(path))
    assert r.returncode == 0, describe(r)
    return Venv(path)


@pytest.fixture
def elsewhere(tmp_path):
    """A working directory outside the repository."""
    assert ROOT not in tmp_path.parents
    return tmp_path


def test_the_installed_module_imports_outside_the_repository(venv, elsewhere):
    code = """if 1:
        import stackless
        print(stackless.__file__)
        ch = stackless.channel()
        stackless.tasklet(lambda: ch.send(stackless.getcurrent().is_main))()
        print(ch.receive(), stackless.current is stackless.main)
    """
    r = run([venv.python, "-c", code], cwd=str(elsewhere))
    assert r.returncode == 0, describe(r)
    path, result = r.stdout.splitlines()
    assert pathlib.Path(path).parent == venv.site_packages
    assert pathlib.Path(path).name.startswith("stackless.cpython-311-")
    assert result == "False True"


def test_the_command_runs_listing2_as_the_launcher_does(venv, elsewhere):
    r = run([venv.command, EXAMPLES / "listing2.py"], cwd=str(elsewhere))
    assert r.returncode == 0, describe(r)
    assert r.stderr == ""
    assert r.stdout == (EXAMPLES / "expected" / "listing2.txt").read_text()
    # The same with a relative path, from the repository, as in the README.
    r = run([venv.command, "examples/python/listing2.py"], cwd=str(ROOT))
    assert r.returncode == 0, describe(r)
    assert r.stdout == (EXAMPLES / "expected" / "listing2.txt").read_text()


def test_the_command_passes_arguments_and_uses_the_installed_module(venv, elsewhere):
    script = elsewhere / "show.py"
    script.write_text("import sys, stackless\n"
                      "print(sys.argv)\n"
                      "print(stackless.__file__)\n"
                      "print(sys.executable)\n"
                      "sys.exit(int(sys.argv[-1]))\n")
    r = run([venv.command, script, "a b", "--flag", "3"], cwd=str(elsewhere))
    assert r.returncode == 3, describe(r)
    argv, module, executable = r.stdout.splitlines()
    assert argv == repr([str(script), "a b", "--flag", "3"])
    assert pathlib.Path(module).parent == venv.site_packages
    assert pathlib.Path(executable).parent == venv.path / "bin"


def test_the_command_runs_code_and_modules(venv, elsewhere):
    r = run([venv.command, "-c", "import sys, stackless; print(sys.argv[1:], stackless.runcount)",
             "x", "y"], cwd=str(elsewhere))
    assert r.returncode == 0, describe(r)
    assert r.stdout == "['x', 'y'] 1\n"

    (elsewhere / "hello_tasklets.py").write_text(
        "import sys, stackless\n"
        "stackless.tasklet(print)('tasklet', *sys.argv[1:])\n"
        "stackless.run()\n"
        "print(__name__)\n")
    r = run([venv.command, "-m", "hello_tasklets", "1", "2"], cwd=str(elsewhere))
    assert r.returncode == 0, describe(r)
    assert r.stdout == "tasklet 1 2\n__main__\n"

    r = run([venv.command, "-c", "raise ValueError('boom')"], cwd=str(elsewhere))
    assert r.returncode == 1
    assert r.stderr.rstrip().endswith("ValueError: boom")


def test_the_stubs_are_installed(venv):
    record = next(venv.site_packages.glob("stackless-*.dist-info")) / "RECORD"
    recorded = {line.split(",")[0] for line in record.read_text().splitlines()}
    for relative in ("stackless.pyi", "stackless-stubs/__init__.pyi"):
        installed = venv.site_packages / relative
        assert installed.read_text() == STUB.read_text(), relative
        assert relative in recorded, "%s not in RECORD: pip uninstall would leave it" % relative


def test_mypy_finds_the_installed_stubs(venv, elsewhere):
    r = run([SYSTEM_PYTHON, "-c", "import mypy"])
    if r.returncode != 0:
        pytest.skip("mypy is not installed (Debian: python3-mypy)")
    (elsewhere / "uses_stackless.py").write_text(
        "import stackless\n"
        "t: stackless.tasklet = stackless.tasklet(print)('x')\n"
        "reveal_type(stackless.getcurrent().next)\n"
        "stackless.channel().send_sequence(3)  # an error: not iterable\n")
    r = run([SYSTEM_PYTHON, "-m", "mypy", "--python-executable", venv.python,
             "--cache-dir", elsewhere / ".mypy_cache", "uses_stackless.py"], cwd=str(elsewhere))
    assert 'Revealed type is "Union[stackless.tasklet, None]"' in r.stdout, describe(r)
    assert 'uses_stackless.py:4: error: Argument 1 to "send_sequence"' in r.stdout, describe(r)
    assert "Found 1 error" in r.stdout, describe(r)
