"""Builds and installs the `stackless` extension module with the project's CMake build.

    python3 -m venv --system-site-packages VENV      # Debian: python3-venv, python3-setuptools
    VENV/bin/pip install --no-build-isolation .      # offline: no download

installs
  - stackless.cpython-311-*.so   the extension module (CMake target stackless_python), built for
                                 the interpreter doing the install, in Release mode
  - stackless.pyi                its type stubs (python/stackless.pyi), next to the module
  - stackless_cli.py, and the `stackless` command that runs Python with the module as the
    repository's ./stackless launcher does: stackless FILE.py [ARGS], stackless -m MODULE, ...

The CMake build tree, build/pip, is kept: installing again rebuilds only what changed. Set CMAKE_ARGS to pass more options
to CMake, CMAKE_BUILD_PARALLEL_LEVEL to change the number of parallel jobs. Build requirements
(Debian packages): cmake, a C++20 compiler, libboost-context-dev, python3-dev; configuring the
whole project also finds GoogleTest (libgtest-dev) and Boost.Fiber (libboost-fiber-dev).
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
        ] + shlex.split(os.environ.get("CMAKE_ARGS", ""))
        build = [cmake, "--build", str(tree), "--target", ext.target]
        if "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ:
            build += ["-j", str(os.cpu_count() or 1)]
        for command in (configure, build):
            print(" ".join(shlex.quote(c) for c in command), flush=True)
            subprocess.run(command, check=True)

        # Python3_add_library(... WITH_SOABI) names it as this interpreter expects.
        built = tree / "python" / ("stackless" + sysconfig.get_config_var("EXT_SUFFIX"))
        if not built.exists():
            sys.exit("error: CMake did not produce %s" % built)
        destination = Path(self.get_ext_fullpath(ext.name))
        destination.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(built), str(destination))


class build_py_with_stub(build_py):
    """Also puts python/stackless.pyi at the top of the installed tree, next to the extension
    module (PEP 561 stubs for the single-module distribution)."""

    def _stub_output(self):
        return os.path.join(self.build_lib, STUB.name)

    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install finds python/ itself
            self.copy_file(str(STUB), self._stub_output())

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if not self.editable_mode:
            outputs.append(self._stub_output())
        return outputs

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        mapping[self._stub_output()] = str(STUB)
        return mapping

    def get_source_files(self):
        return super().get_source_files() + [str(STUB)]


setup(
    package_dir={"": "python"},
    py_modules=["stackless_cli"],
    ext_modules=[CMakeExtension("stackless", CMAKE_TARGET)],
    cmdclass={"build_ext": build_cmake_ext, "build_py": build_py_with_stub},
    zip_safe=False,
)
