"""Builds the caption query's native kernels (biasamp/corpus/_scan.c); everything else is in
pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and the query
runs its Polars path (`biasamp.corpus.kernels.available()` is then False). Where the
Hyperscan (or Vectorscan) C library and headers are installed (`pkg-config libhs`; Debian:
libhyperscan-dev or libvectorscan-dev), the prefilter's scan is linked in too, so it runs
without the interpreter lock; set BIASAMP_NO_LIBHS=1 to build without it.
"""

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup


def libhs() -> dict:
    """Compiler and linker flags for libhs, or {} when it is not installed."""
    if os.environ.get("BIASAMP_NO_LIBHS") == "1" or not shutil.which("pkg-config"):
        return {}
    try:
        cflags = subprocess.run(["pkg-config", "--cflags", "libhs"], capture_output=True, text=True, check=True).stdout.split()
        libs = subprocess.run(["pkg-config", "--libs", "libhs"], capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {
        "include_dirs": [f[2:] for f in cflags if f.startswith("-I")],
        "library_dirs": [f[2:] for f in libs if f.startswith("-L")],
        "libraries": [f[2:] for f in libs if f.startswith("-l")],
        "define_macros": [("BIASAMP_HAVE_HS", "1")],
    }


args = [] if sys.platform == "win32" else ["-O3", "-std=c99"]
setup(
    ext_modules=[
        Extension("biasamp.corpus._scan", ["src/biasamp/corpus/_scan.c"], extra_compile_args=args, optional=True, **libhs())
    ]
)
