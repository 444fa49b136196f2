"""Builds and installs the `stackless` extension module with the project's CMake build.

    python3 -m venv --system-site-packages VENV      # Debian: python3-venv, python3-setuptools
    VENV/bin/pip install --no-build-isolation .      # offline: no download

installs
  - stackless.cpython-311-*.so   the extension module (CMake target stackless_python), built for
                                 the interpreter doing the install, in Release mode
  - stackless.pyi                its type stubs (python/stackless.pyi), next to the module, and
    stackless-stubs/__init__.pyi the same stubs as a PEP 561 stub-only package, for mypy
  - stackless_cli.py, and the `stackless` command that runs Python with the module as the
    repository's ./stackless launcher does: stackless FILE.py [ARGS], stackless -m MODULE, ...

Everything the build writes goes to build/: the CMake build tree build/pip, which is kept so that
installing again rebuilds only what changed, and setuptools' build/lib.*, build/bdist.* and
build/stackless.egg-info. Set CMAKE_ARGS to pass more options to CMake,
CMAKE_BUILD_PARALLEL_LEVEL to change the number of parallel jobs. Build requirements (Debian
packages): cmake, a C++20 compiler, libboost-context-dev, python3-dev (the C++ tests and
benchmarks, which need GoogleTest and Boost.Fiber, are not configured).
"""
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# The binding relies on CPython 3.11's interpreter-state layout: refuse any other interpreter
# before setuptools does anything.
if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
    sys.exit(
        "error: stackless supports CPython 3.11 only (the binding relies on CPython 3.11's "
        "thread-state layout); %s is %s %s. Install with a CPython 3.11 interpreter, e.g. in "
        "a virtual environment made by `/usr/bin/python3 -m venv --system-site-packages VENV` "
        "on Debian 12."
        % (sys.executable or "this interpreter", sys.implementation.name,
           ".".join(map(str, sys.version_info[:3]))))

from setuptools import Extension, setup  # noqa: E402
from setuptools.command.build_ext import build_ext  # noqa: E402
from setuptools.command.build_py import build_py  # noqa: E402

STUB = Path("python") / "stackless.pyi"
CMAKE_TARGET = "stackless_python"


class CMakeExtension(Extension):
    """An extension module built by a target of the project's CMake build."""

    def __init__(self, name, target):
        super().__init__(name, sources=[])
        self.target = target


def _build_tree():
    """build/pip, emptied first if it was configured for another source tree (the repository
    was copied or moved: CMake refuses to reuse its cache). A change of interpreter needs
    nothing: CMake's FindPython looks again when Python3_EXECUTABLE changes."""
    tree = ROOT / "build" / "pip"
    cache = tree / "CMakeCache.txt"
    if cache.exists():
        home = None
        for line in cache.read_text(errors="replace").splitlines():
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                home = line.partition("=")[2]
        if home is None or Path(home).resolve() != ROOT:
            shutil.rmtree(tree)
    return tree


class build_cmake_ext(build_ext):
    """Builds CMakeExtension modules with CMake, then copies them where build_ext puts its
    output (into the wheel's tree, or next to the sources with --inplace)."""

    def build_extension(self, ext):
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        cmake = shutil.which("cmake")
        if cmake is None:
            sys.exit("error: building stackless needs CMake 3.20 or later (Debian: apt-get "
                     "install cmake), and libboost-context-dev, python3-dev, a C++20 compiler")
        tree = _build_tree()
        tree.mkdir(parents=True, exist_ok=True)
        configure = [
            cmake, "-S", str(ROOT), "-B", str(tree),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DPython3_EXECUTABLE=" + sys.executable,
            "-DSTACKLESS_PYTHON=ON",
            "-DSTACKLESS_TESTS=OFF",  # only the module: no GoogleTest or Boost.Fiber needed
            "-DSTACKLESS_BENCH=OFF",
        ] + shlex.split(os.environ.get("CMAKE_ARGS", ""))
        build = [cmake, "--build", str(tree), "--target", ext.target]
        if "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ:
            build += ["-j", str(os.cpu_count() or 1)]
        for command in (configure, build):
            line = " ".join(shlex.quote(c) for c in command)
            print(line, flush=True)
            if subprocess.run(command).returncode != 0:
                sys.exit("error: building the stackless extension module failed: %s (its output "
                         "is above)" % line)

        # Python3_add_library(... WITH_SOABI) names it as this interpreter expects.
        built = tree / "python" / ("stackless" + sysconfig.get_config_var("EXT_SUFFIX"))
        if not built.exists():
            sys.exit("error: CMake did not produce %s" % built)
        destination = Path(self.get_ext_fullpath(ext.name))
        destination.parent.mkdir(parents=True, exist_ok=True)
        print("copying %s -> %s" % (built, destination), flush=True)
        shutil.copy2(built, destination)  # always: it may be older than an earlier build's


class build_py_with_stub(build_py):
    """Also installs the type stubs python/stackless.pyi twice:
      - stackless.pyi next to the extension module, where pyright, Pylance and jedi look;
      - stackless-stubs/__init__.pyi, a PEP 561 stub-only package: mypy ignores a top-level .pyi
        in site-packages (PEP 561 covers packages only), but finds this one."""

    def _stub_outputs(self):
        return [os.path.join(self.build_lib, STUB.name),
                os.path.join(self.build_lib, "stackless-stubs", "__init__.pyi")]

    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install finds python/ itself
            for output in self._stub_outputs():
                self.mkpath(os.path.dirname(output))
                self.copy_file(str(STUB), output)

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if not self.editable_mode:
            outputs += self._stub_outputs()
        return outputs

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        mapping.update((output, str(STUB)) for output in self._stub_outputs())
        return mapping

    def get_source_files(self):
        return super().get_source_files() + [str(STUB)]


# setuptools would put stackless.egg-info in python/, next to the sources.
(ROOT / "build").mkdir(exist_ok=True)

setup(
    package_dir={"": "python"},
    py_modules=["stackless_cli", "_stackless_pickle", "_stackless_generators",
                "_stackless_bytecode"],
    ext_modules=[CMakeExtension("stackless", CMAKE_TARGET)],
    cmdclass={"build_ext": build_cmake_ext, "build_py": build_py_with_stub},
    options={"egg_info": {"egg_base": "build"}},
    zip_safe=False,
)
