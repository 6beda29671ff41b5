#!/usr/bin/env bash
# Builds dist/rxcohort-offline-<version>.tar.gz, the offline install kit (docs/offline.md).
# Run by `make bundle`, which first checks the Delta JARs (`make delta-jars`).
#
#   PYTHON     a Python 3.11 with pip (the checkout's .venv/bin/python)
#   JARS_DIR   the verified Delta JARs and their jars.txt
#   GLIBC      the oldest glibc the kit must install on (default 2.28: RHEL/Rocky 8; pyarrow
#              22 needs 2.28 anyway)
#   DIST       where the kit goes (default dist/)
#
# The network is used here and only here: pip fetches the wheels (through whatever index the
# user's pip configuration names). Everything install.sh needs is then inside the kit.
set -euo pipefail

: "${PYTHON:?set PYTHON to a Python 3.11 with pip}" "${JARS_DIR:?set JARS_DIR to the Delta JARs}"
GLIBC=${GLIBC:-2.28}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$repo/build/offline
DIST=$(mkdir -p "${DIST:-$repo/dist}" && cd "${DIST:-$repo/dist}" && pwd)
cd "$repo"

"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  { echo "bundle: $PYTHON is not Python 3.11: the kit's wheels are for CPython 3.11" >&2; exit 1; }
version=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
# Runs record rxcohort.__version__: it must be the version the kit is named and installed by.
grep -Eq "^__version__ = \"$version\"$" src/rxcohort/__init__.py ||
  { echo "bundle: src/rxcohort/__init__.py __version__ is not $version (pyproject.toml)" >&2; exit 1; }
pip_version=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("pip"))')
name=rxcohort-offline-$version
# Fixed times in the wheel and the archive: the same sources give the same listing and dates.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH
read -r -a platforms <<< "$("$PYTHON" "$here/check_kit.py" platforms --glibc "$GLIBC")"

work=$(mktemp -d "${TMPDIR:-/tmp}/rxcohort-bundle.XXXXXX")
trap 'rm -rf "$work"' EXIT
kit=$work/$name
mkdir -p "$kit/wheels" "$kit/jars" "$work/src"
pip=("$PYTHON" -m pip --disable-pip-version-check)

echo "bundle: rxcohort $version wheel"
# Built from a copy of the sources: setuptools then leaves no build/lib or egg-info in the
# checkout, and a build/lib left by an earlier build cannot put deleted modules in the wheel.
tar -cf - --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' \
  pyproject.toml README.md src | tar -xf - -C "$work/src"
"${pip[@]}" wheel --quiet --no-deps --wheel-dir "$kit/wheels" "$work/src"
rx_wheel=$kit/wheels/rxcohort-$version-py3-none-any.whl
"$PYTHON" "$here/check_kit.py" package-data "$work/src/src/rxcohort" "$rx_wheel"

echo "bundle: runtime dependencies for CPython 3.11, Linux x86_64, glibc >= $GLIBC"
# First as this machine would install them: dependencies published only as source (pyspark)
# become wheels here. Then the kit's own set, binary only, for the target platform: where this
# machine got a wheel for a newer glibc, the target's is fetched instead.
"${pip[@]}" wheel --quiet --wheel-dir "$work/native" "$rx_wheel"
"${pip[@]}" download --quiet --only-binary=:all: "${platforms[@]}" \
  --python-version 3.11 --implementation cp --abi cp311 \
  --find-links "$kit/wheels" --find-links "$work/native" \
  --dest "$kit/wheels" "rxcohort==$version" "pip==$pip_version"
"$PYTHON" "$here/check_kit.py" wheels "$kit/wheels" --glibc "$GLIBC"
# The kit alone must satisfy rxcohort on the target: resolve it with no index, no pip
# configuration and no find-links but the kit's.
env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
  "${pip[@]}" install --quiet --dry-run --ignore-installed --no-index \
  --find-links "$kit/wheels" --only-binary=:all: "${platforms[@]}" \
  --python-version 3.11 --implementation cp --abi cp311 \
  --target "$work/dry-run" "rxcohort==$version" "pip==$pip_version"

echo "bundle: Delta JARs from $JARS_DIR"
# Only what jars.txt names travels, and jars.txt goes last, as `make delta-jars` writes it.
sed -E 's/^[0-9a-fA-F]{64} [ *]//' "$JARS_DIR/jars.txt" | while IFS= read -r jar; do
  cp "$JARS_DIR/$jar" "$kit/jars/"
done
cp "$JARS_DIR/jars.txt" "$kit/jars/jars.txt"
(cd "$kit/jars" && sha256sum --quiet --check jars.txt)

echo "bundle: conf/, cohorts/, expectations/, install.sh, README.txt"
cp -R conf cohorts expectations "$kit/"
find "$kit/conf" "$kit/cohorts" "$kit/expectations" -name __pycache__ -prune -exec rm -rf {} +
sed "s/@VERSION@/$version/g" "$here/install.sh" > "$kit/install.sh"
sed -e "s/@VERSION@/$version/g" -e "s/@GLIBC@/$GLIBC/g" "$here/README.txt" > "$kit/README.txt"
chmod 755 "$kit/install.sh"
chmod -R u+rwX,go+rX,go-w "$kit"

# Every file of the kit, paths relative to its top directory (sha256sum --check SHA256SUMS).
(cd "$kit" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort |
  xargs -d '\n' sha256sum > SHA256SUMS)

echo "bundle: packing $name.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
  -C "$work" -cf - "$name" | gzip -n > "$DIST/$name.tar.gz.tmp"
mv "$DIST/$name.tar.gz.tmp" "$DIST/$name.tar.gz"
(cd "$DIST" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "bundle: $DIST/$name.tar.gz ($(( $(stat -c %s "$DIST/$name.tar.gz") / 1000000 )) MB," \
  "$(wc -l < "$kit/SHA256SUMS") files; sha256 in $name.tar.gz.sha256)"
