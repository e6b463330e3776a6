"""Set-up in one command, with nothing but Python 3.11+: ``python3 -m gridsvc.bootstrap run|test``.

Standard library only: this runs before any dependency is installed. It makes ``.venv`` in the
project folder, installs gridsvc with its dependencies into it (again only when pyproject.toml
changed), then either brings the embedded PostGIS up, loads the demo city and serves
(``run``), or runs every quality gate and the whole test suite (``test``). PostgreSQL/PostGIS
are installed by gridsvc itself (apt on Debian as root) when first needed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".gridsvc-installed"
BIN = VENV / "bin"

# The gates the test command runs, in order; each must pass.
CHECKS: list[tuple[str, list[str]]] = [
    ("ruff lint", ["ruff", "check", "gridsvc", "gis", "migrations", "tests", "bench"]),
    ("ruff format", ["ruff", "format", "--check", "gridsvc", "gis", "migrations", "tests", "bench"]),
    ("mypy (strict)", ["mypy"]),
    ("import contracts", ["lint-imports"]),
]


def say(message: str) -> None:
    """Print a step, flushed so CI logs stay in order."""
    print(f"[gridsvc] {message}", flush=True)


def is_debian_root() -> bool:
    """True when apt-get may be used to install system packages."""
    return os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def apt_install(*packages: str) -> None:
    """Install Debian packages (root only)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"apt-get install {' '.join(packages)}")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", *packages], check=True, env=env, stdout=subprocess.DEVNULL
    )


def ensure_venv() -> None:
    """Create .venv, installing Debian's python3-venv first if this Python lacks ensurepip."""
    if (BIN / "python").exists():
        return
    say(f"creating {VENV}")
    result = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True)
    if result.returncode != 0:
        if not is_debian_root():
            sys.exit(f"could not create a virtualenv:\n{result.stderr}\nInstall python3-venv and try again.")
        shutil.rmtree(VENV, ignore_errors=True)
        minor = f"{sys.version_info.major}.{sys.version_info.minor}"
        apt_install("python3-venv", f"python{minor}-venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)


def ensure_installed() -> None:
    """pip install -e .[dev] into .venv unless pyproject.toml is unchanged since the last install."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    say("installing gridsvc and its dependencies into .venv (first time takes a few minutes)")
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True, cwd=ROOT)
    subprocess.run([*pip, "-e", ".[dev]"], check=True, cwd=ROOT)
    STAMP.write_text(digest)


def run_service(args: list[str]) -> int:
    """Bring everything up and serve (does not return until the server stops)."""
    command = [str(BIN / "gridsvc"), "quickstart", *args]
    os.chdir(ROOT)
    os.execv(command[0], command)
    return 0  # pragma: no cover - execv does not return


# Programs the test suite runs besides PostgreSQL (which gridsvc installs itself): ogr2ogr is the anchor
# the import benchmark's smoke test runs beside gridsvc; chromium and its chromedriver run the browser
# tests of the map pages (tests/browser), Debian's builds, since nothing else may be downloaded.
TEST_PROGRAMS = {"ogr2ogr": "gdal-bin", "chromium": "chromium", "chromedriver": "chromium-driver"}


def ensure_test_programs() -> None:
    """Install the Debian packages of programs the tests need, when missing and allowed."""
    missing = [pkg for program, pkg in TEST_PROGRAMS.items() if shutil.which(program) is None]
    if not missing:
        return
    if not is_debian_root():
        sys.exit(f"the tests need {', '.join(TEST_PROGRAMS)}: install {' '.join(missing)}")
    apt_install(*missing)


def run_tests(args: list[str]) -> int:
    """Every quality gate, then the whole test suite; non-zero if anything failed."""
    ensure_test_programs()
    failed: list[str] = []
    for name, command in CHECKS:
        started = time.monotonic()
        say(f"{name}: {' '.join(command)}")
        result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT)
        say(f"{name}: {'ok' if result.returncode == 0 else 'FAILED'} ({time.monotonic() - started:.0f} s)")
        if result.returncode != 0:
            failed.append(name)
    say("pytest: the whole suite (it starts its own PostGIS)")
    result = subprocess.run([str(BIN / "python"), "-m", "pytest", *args], cwd=ROOT)
    # Exit code 5 means no test ran at all: that is a failure here, not a pass.
    if result.returncode != 0:
        failed.append(f"pytest (exit {result.returncode})")
    if failed:
        say(f"FAILED: {', '.join(failed)}")
        return 1
    say("all checks and tests passed")
    return 0


def main(argv: list[str]) -> int:
    """Entry point: ``run`` or ``test``, then extra arguments for quickstart or pytest."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs under whatever python3 the user has
        sys.exit("gridsvc needs Python 3.11 or newer")
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__)
        print("usage: python3 -m gridsvc.bootstrap run [quickstart options] | test [pytest options]")
        return 2
    ensure_venv()
    ensure_installed()
    if argv[0] == "run":
        return run_service(argv[1:])
    return run_tests(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
