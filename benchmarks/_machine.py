"""What a result file says about where it was measured: machine, CPU, cores and versions."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

__all__ = ["cpu_model", "machine_line", "package_versions"]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), or the best ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    """One sentence: host name, CPU, cores and platform."""
    return (
        f"Machine: {platform.node()}, {cpu_model()}, {os.cpu_count()} cores, {platform.platform()}."
    )


def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Python's version and each installed package's (``not installed`` for the others)."""
    out = {"python": platform.python_version()}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out
