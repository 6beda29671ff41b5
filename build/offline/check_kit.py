"""Checks `make bundle` runs on the offline kit before it is packed (see docs/offline.md).

    check_kit.py platforms --glibc 2.28          # pip's --platform options for the target
    check_kit.py package-data SRC_PKG WHEEL      # every data file of src/rxcohort is in the wheel
    check_kit.py wheels WHEELS_DIR --glibc 2.28  # every wheel installs on the target, one per project

The target is the secure server: Linux x86_64, CPython 3.11, glibc at least as old as
``--glibc``. pip picks wheels for the machine it runs on; a wheel for a newer glibc than the
server's (cryptography publishes manylinux_2_34 ones) would make the install fail there, in a
place where nothing can be fetched again. Standard library and ``packaging`` only.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

PYTHON = (3, 11)
ARCH = "x86_64"


def target_platforms(glibc: str) -> list[str]:
    """manylinux platform tags a glibc-``glibc`` x86_64 system accepts, newest first.

    pip expands only the legacy aliases (manylinux2014, manylinux2010) to older tags, so
    every manylinux_2_N tag is listed explicitly. Plain ``linux_x86_64`` (a wheel built on
    this machine, for this machine's libraries) is deliberately not among them.
    """
    major, minor = (int(part) for part in glibc.split("."))
    if major != 2 or minor < 17:
        raise SystemExit(f"--glibc must be 2.17 or newer, not {glibc}")
    tags = [f"manylinux_2_{n}_{ARCH}" for n in range(minor, 4, -1)]
    return [*tags, f"manylinux2014_{ARCH}", f"manylinux2010_{ARCH}", f"manylinux1_{ARCH}"]


def target_tags(glibc: str) -> set[Tag]:
    platforms = target_platforms(glibc)
    tags = set(cpython_tags(PYTHON, abis=["cp311"], platforms=platforms))
    tags |= set(compatible_tags(PYTHON, interpreter="cp311", platforms=platforms))
    return tags


def check_package_data(package_dir: Path, wheel: Path) -> int:
    """Every file of the package's source tree (bytecode aside) must be inside the wheel:
    the reference CSVs and resources are read from the installed package, not the checkout."""
    top = package_dir.name
    wanted = {
        f"{top}/{path.relative_to(package_dir).as_posix()}"
        for path in package_dir.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    with zipfile.ZipFile(wheel) as archive:
        present = set(archive.namelist())
    missing = sorted(wanted - present)
    if missing:
        print(
            f"{wheel.name} lacks {len(missing)} file(s) of {package_dir}: {', '.join(missing)} "
            "(add them to [tool.setuptools.package-data] in pyproject.toml)",
            file=sys.stderr,
        )
        return 1
    data = sorted(name for name in wanted if not name.endswith(".py"))
    print(f"{wheel.name}: all {len(wanted)} package files, data files: {', '.join(data)}")
    return 0


def check_wheels(directory: Path, glibc: str) -> int:
    accepted = target_tags(glibc)
    versions: dict[str, set[str]] = defaultdict(set)
    problems: list[str] = []
    wheels = sorted(directory.glob("*.whl"))
    for wheel in wheels:
        name, version, _build, tags = parse_wheel_filename(wheel.name)
        versions[name].add(str(version))
        if not tags & accepted:
            problems.append(f"{wheel.name} does not install on CPython 3.11, glibc {glibc}")
    problems += [
        f"{name} is in the kit in {len(found)} versions ({', '.join(sorted(found))})"
        for name, found in sorted(versions.items())
        if len(found) > 1
    ]
    others = sorted(path.name for path in directory.iterdir() if path.suffix != ".whl")
    problems += [f"{name} is not a wheel" for name in others]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    size = sum(wheel.stat().st_size for wheel in wheels)
    print(
        f"{len(wheels)} wheels, {size / 1e6:.0f} MB, all for CPython 3.11 on "
        f"Linux {ARCH} with glibc >= {glibc}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_kit.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    platforms = commands.add_parser("platforms")
    platforms.add_argument("--glibc", required=True)
    package_data = commands.add_parser("package-data")
    package_data.add_argument("package_dir", type=Path)
    package_data.add_argument("wheel", type=Path)
    wheels = commands.add_parser("wheels")
    wheels.add_argument("directory", type=Path)
    wheels.add_argument("--glibc", required=True)
    args = parser.parse_args(argv)
    if args.command == "platforms":
        print(" ".join(f"--platform {tag}" for tag in target_platforms(args.glibc)))
        return 0
    if args.command == "package-data":
        return check_package_data(args.package_dir, args.wheel)
    return check_wheels(args.directory, args.glibc)


if __name__ == "__main__":
    sys.exit(main())
