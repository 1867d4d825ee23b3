"""The browser the browser tests drive: Debian's Chromium, never a downloaded build (none can be fetched offline).

`python -m tests.browser.chromium` (run by `make test` first) makes sure it is there: when it is
missing and this is root with apt-get, it installs the `chromium` package; otherwise it stops with
the exact command to run. Standard library only, so it runs before anything else is set up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# CHROMIUM=/path/to/chromium points the tests at another build of it.
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
APT_INSTALL = ("apt-get update", "apt-get install -y chromium")
INSTALL_COMMAND = " && ".join(f"sudo {step}" for step in APT_INSTALL)


def missing_message() -> str:
    return (
        f"The browser tests need Chromium at {CHROMIUM} and it is not there. Install it with:\n\n"
        f"    {INSTALL_COMMAND}\n\n"
        "(or set CHROMIUM to the path of a Chromium binary)."
    )


def is_installed() -> bool:
    return CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None and str(CHROMIUM) == "/usr/bin/chromium"


def ensure() -> int:
    """0 when Chromium is there (installing it if this machine can), 1 with the command to run otherwise."""
    if is_installed():
        return 0
    if can_install():
        print(f"Chromium is missing: installing Debian's package ({' && '.join(APT_INSTALL)})", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in APT_INSTALL:
            if subprocess.run(step.split(), env=env, check=False).returncode != 0:
                break
        if is_installed():
            return 0
    print(missing_message(), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(ensure())
