"""Builds the Rust library and bundles it (and the C header) into the package.

``pip install ./bindings/python`` runs ``cargo build --release --lib`` in the crate
this directory belongs to (two levels up), then copies ``liblibqueue.so`` and
``include/libqueue.h`` next to the Python modules. Set ``LIBQUEUE_LIBRARY`` (and
optionally ``LIBQUEUE_HEADER``) to bundle a library built elsewhere instead, and
``CARGO`` to pick the cargo binary.

It also compiles ``libqueue/_fast.c`` with the system C compiler: a small CPython
extension (stable ABI, no link to the library) that makes the hot non-blocking calls
with the GIL held. The wheel is platform-specific and ``abi3``: one build serves
every CPython >= 3.9.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
LIBNAME = "liblibqueue.dylib" if sys.platform == "darwin" else "liblibqueue.so"


def crate_root() -> Path:
    for p in [HERE, *HERE.parents]:
        if (p / "Cargo.toml").exists() and (p / "include" / "libqueue.h").exists():
            return p
    raise SystemExit("libqueue: cannot find the crate (Cargo.toml) above bindings/python")


class BuildWithCargo(build_py):
    def run(self) -> None:
        super().run()
        dest = Path(self.build_lib) / "libqueue"
        dest.mkdir(parents=True, exist_ok=True)
        lib = os.environ.get("LIBQUEUE_LIBRARY")
        header = os.environ.get("LIBQUEUE_HEADER")
        if not lib:
            root = crate_root()
            cargo = os.environ.get("CARGO", "cargo")
            subprocess.check_call([cargo, "build", "--release", "--lib"], cwd=root)
            target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
            if not target.is_absolute():
                target = root / target
            lib = str(target / "release" / LIBNAME)
        if not header:
            header = str(crate_root() / "include" / "libqueue.h")
        shutil.copy2(lib, dest / LIBNAME)
        shutil.copy2(header, dest / "libqueue.h")


def header_dir() -> str:
    header = os.environ.get("LIBQUEUE_HEADER")
    return str(Path(header).parent if header else crate_root() / "include")


FAST = Extension(
    "libqueue._fast",
    sources=["libqueue/_fast.c"],
    include_dirs=[header_dir()],
    define_macros=[("Py_LIMITED_API", "0x03090000")],
    extra_compile_args=["-O2"],
    py_limited_api=True,
)


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:  # a platform wheel: it carries a .so
        return True


try:
    from wheel.bdist_wheel import bdist_wheel

    class PlatformWheel(bdist_wheel):
        def get_tag(self):
            _, _, plat = super().get_tag()
            return "cp39", "abi3", plat

    cmdclass = {"build_py": BuildWithCargo, "bdist_wheel": PlatformWheel}
except ImportError:  # pragma: no cover
    cmdclass = {"build_py": BuildWithCargo}

setup(cmdclass=cmdclass, distclass=BinaryDistribution, ext_modules=[FAST])
