"""Builds the Rust library and bundles it (and the C header) into the package.

``pip install ./bindings/python`` runs ``cargo build --release --lib --features bridge`` in the crate
this directory belongs to (two levels up), then copies ``liblibqueue.so`` and
``include/libqueue.h`` next to the Python modules and strips the copied library of
its debug information and local symbols (``strip --strip-unneeded``; the cargo build
keeps them, the wheel does not need them). Set ``LIBQUEUE_LIBRARY`` (and optionally
``LIBQUEUE_HEADER``) to bundle a library built elsewhere instead, ``CARGO`` to pick the
cargo binary, ``CARGO_TARGET_DIR`` to reuse a build directory, ``STRIP`` to pick the
strip binary.

The sdist (``python -m build --sdist``) is self-contained: it carries the crate under
``_crate/`` (``Cargo.toml`` without the dev-dependencies and the bench, test and example
targets it does not ship, ``Cargo.lock``, ``build.rs``, ``cbindgen.toml``, ``src/``,
``include/libqueue.h``), and a build from the tarball finds it there.

It also compiles ``libqueue/_fast.c`` (with ``_fast_pin.c`` and ``_fast_delivery.c``;
``_fast.h`` lists them) with the system C compiler: a small CPython extension (stable
ABI, no link to the library) that makes the hot non-blocking calls with the GIL held.
The wheel is platform-specific and ``abi3`` (tag ``cp39-abi3``): one build serves
every CPython >= 3.9, and it installs without Rust.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
LIBNAME = "liblibqueue.dylib" if sys.platform == "darwin" else "liblibqueue.so"
#: The library is built with bridges (libqueue.Bridge), as ``make lib`` builds it.
CARGO_FEATURES = ["--features", "bridge"]
#: Where the sdist carries the crate, beside setup.py.
SDIST_CRATE = "_crate"
#: What of the crate the build needs (files, and folders copied whole).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml", "include/libqueue.h"]
CRATE_DIRS = ["src"]
#: Cargo.toml tables the library build does not use, left out of the sdist's copy
#: (their files, benches/ tests/ examples/, are not shipped).
DROPPED_TABLES = {"[dev-dependencies]", "[[bench]]", "[[test]]", "[[example]]", "[profile.bench]"}


def crate_root() -> Path:
    """The crate: the sdist's copy beside this file, else the checkout this lies in."""
    candidates = [HERE / SDIST_CRATE, HERE, *HERE.parents]
    for p in candidates:
        if (p / "Cargo.toml").exists() and (p / "include" / "libqueue.h").exists():
            return p
    raise SystemExit(
        "libqueue: cannot find the crate (Cargo.toml and include/libqueue.h) in "
        f"{HERE / SDIST_CRATE} or above {HERE}"
    )


def library_cargo_toml(text: str) -> str:
    """Cargo.toml less the tables in DROPPED_TABLES (a table runs to the next header)."""
    out = []
    keep = True
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            keep = stripped.split("#")[0].strip() not in DROPPED_TABLES
        if keep:
            out.append(line)
    return "".join(out)


def strip_library(path: Path) -> None:
    """Strips the bundled copy (debug information and local symbols; the exported
    C functions stay). Fails the build when it cannot: no silent 10 MB wheel."""
    strip = os.environ.get("STRIP", "strip")
    args = ["-x"] if sys.platform == "darwin" else ["--strip-unneeded"]
    if shutil.which(strip) is None:
        raise SystemExit(f"libqueue: '{strip}' not found (binutils); set STRIP")
    subprocess.check_call([strip, *args, str(path)])


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
            if shutil.which(cargo) is None:
                raise SystemExit(
                    f"libqueue: building from source needs Rust ('{cargo}' not found); "
                    "install a wheel (make wheel) or set LIBQUEUE_LIBRARY"
                )
            subprocess.check_call([cargo, "build", "--release", "--lib", *CARGO_FEATURES], cwd=root)
            target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
            if not target.is_absolute():
                target = root / target
            lib = str(target / "release" / LIBNAME)
        if not header:
            header = str(crate_root() / "include" / "libqueue.h")
        shutil.copyfile(lib, dest / LIBNAME)
        os.chmod(dest / LIBNAME, 0o755)
        strip_library(dest / LIBNAME)
        shutil.copyfile(header, dest / "libqueue.h")


class StrippedExt(build_ext):
    """The extension stripped like the library (Python's own CFLAGS add -g)."""

    def build_extension(self, ext: Extension) -> None:
        super().build_extension(ext)
        strip_library(Path(self.get_ext_fullpath(ext.name)))


class SelfContainedSdist(sdist):
    """Adds the crate under _crate/, so the tarball builds on its own."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        root = crate_root()
        dest = Path(base_dir) / SDIST_CRATE
        for name in CRATE_FILES:
            src = root / name
            if not src.exists():
                raise SystemExit(f"libqueue sdist: {src} is missing")
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            if name == "Cargo.toml":
                text = src.read_text(encoding="utf-8")
                (dest / name).write_text(library_cargo_toml(text), encoding="utf-8")
            else:
                shutil.copyfile(src, dest / name)
        for name in CRATE_DIRS:
            shutil.copytree(
                root / name, dest / name, ignore=shutil.ignore_patterns("target", "*.orig", "*.rej")
            )


def header_dir() -> str:
    header = os.environ.get("LIBQUEUE_HEADER")
    return str(Path(header).parent if header else crate_root() / "include")


FAST = Extension(
    "libqueue._fast",
    # _fast.c: the module and the hot calls; _fast_pin.c: Pin; _fast_delivery.c: the
    # C Delivery; _fast.h: what they share (the sdist carries all of them).
    sources=["libqueue/_fast.c", "libqueue/_fast_pin.c", "libqueue/_fast_delivery.c"],
    depends=["libqueue/_fast.h"],
    include_dirs=[header_dir()],
    define_macros=[("Py_LIMITED_API", "0x03090000")],
    # _fast.c checks its function table against the header's declarations: a
    # mismatch is an error, not a warning.
    extra_compile_args=["-O2", "-Werror=incompatible-pointer-types"],
    py_limited_api=True,
)


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:  # a platform wheel: it carries a .so
        return True


setup(
    cmdclass={"build_py": BuildWithCargo, "build_ext": StrippedExt, "sdist": SelfContainedSdist},
    distclass=BinaryDistribution,
    ext_modules=[FAST],
    # abi3: the wheel is tagged cp39-abi3-<platform>, one build for CPython >= 3.9.
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
