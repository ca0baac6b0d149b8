"""Build hook: ships a built libmoert inside the package (moert/lib/) when one is available.

The library copied is `$MOERT_BUNDLE_LIBRARY` when set (set it to "0" to ship none), else the
repository's staged build, ../../build/lib/libmoert.so (run `make` first). A wheel that carries the
library is tagged for this platform; without one the package is pure Python and finds the library at
run time (see moert/_lib.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Tuple

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1 keeps it in the wheel package
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
SONAME = "libmoert.so.1"


def library_to_bundle() -> Optional[Path]:
    """The library file to copy into the package, or None."""
    chosen = os.environ.get("MOERT_BUNDLE_LIBRARY")
    if chosen == "0":
        return None
    path = Path(chosen) if chosen else HERE.parent.parent / "build" / "lib" / "libmoert.so"
    if chosen and not path.is_file():
        raise SystemExit(f"MOERT_BUNDLE_LIBRARY={chosen}: no such file")
    return path.resolve() if path.is_file() else None


class BuildPy(build_py):
    """Copies the library to moert/lib/libmoert.so.1 in the build tree (not for editable installs, which
    find the repository build directory by themselves)."""

    def run(self) -> None:
        super().run()
        library = library_to_bundle()
        if library is None or getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "moert" / "lib" / SONAME
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library, target)
        target.chmod(0o755)


class BdistWheel(bdist_wheel):
    """Tags the wheel for this platform when it carries the library."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if library_to_bundle() is not None:
            self.root_is_pure = False

    def get_tag(self) -> Tuple[str, str, str]:
        python, abi, platform = super().get_tag()
        if not self.root_is_pure:
            return "py3", "none", platform
        return python, abi, platform


setup(cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
