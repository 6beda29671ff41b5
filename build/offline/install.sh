#!/usr/bin/env bash
# Installs rxcohort @VERSION@ from this offline kit alone, with no network:
#
#   ./install.sh TARGET_VENV
#
# 1. checks every file of the kit against SHA256SUMS;
# 2. creates TARGET_VENV with python3.11 (or $PYTHON) if it does not exist;
# 3. installs rxcohort and its dependencies from wheels/ only (no package index is asked);
# 4. copies the Delta JARs of the spark engine to TARGET_VENV/share/rxcohort/jars and checks
#    them against jars.txt;
# 5. installs conf/, cohorts/ and expectations/ under TARGET_VENV/share/rxcohort/ and writes
#    TARGET_VENV/share/rxcohort/activate, which sets RXCOHORT_CONF_DIR;
# 6. checks that the installed rxcohort finds all of it.
#
# Re-running it (with this kit or a newer one) updates the venv in place. A conf/, cohorts/
# or expectations/ that was changed there is moved aside (NAME.before-YYYYmmddTHHMMSS), never
# overwritten.
set -euo pipefail

kit=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=@VERSION@
if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $0 TARGET_VENV   (PYTHON=/path/to/python3.11 to choose the interpreter)" >&2
  exit 2
fi
target=$1
PYTHON=${PYTHON:-python3.11}
say() { echo "install: $*"; }
fail() { echo "install: $*" >&2; exit 1; }

# Nothing from this machine's pip configuration may add a source: the kit is the only one.
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_REQUIREMENT PIP_CONSTRAINT
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1

say "checking the kit against SHA256SUMS"
(cd "$kit" && sha256sum --quiet --strict --check SHA256SUMS) ||
  fail "the kit in $kit does not match its SHA256SUMS: carry it in again"

if [ ! -x "$target/bin/python" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 ||
    fail "$PYTHON not found: install Python 3.11 or set PYTHON=/path/to/python3.11"
  say "creating the virtual environment $target with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$target" ||
    fail "$PYTHON -m venv failed (on Debian/Ubuntu the python3.11-venv package provides it)"
fi
target=$(cd "$target" && pwd)
py=$target/bin/python
"$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  fail "$target is not a Python 3.11 environment ($("$py" --version 2>&1)): the kit's wheels are for CPython 3.11"

say "installing rxcohort $version and its dependencies from $kit/wheels"
pip=("$py" -m pip install --quiet --no-index --find-links "$kit/wheels" --only-binary=:all:)
# The kit's pip first: the one a venv starts with may be too old for today's wheels.
"${pip[@]}" --upgrade pip
"${pip[@]}" "rxcohort==$version"

share=$target/share/rxcohort
jars=$share/jars
say "Delta JARs to $jars"
mkdir -p "$jars"
# As `make delta-jars`: old JARs go, and jars.txt is written last (rxcohort trusts only a
# directory whose jars.txt matches its JARs).
rm -f "$jars"/*.jar "$jars/jars.txt"
cp "$kit"/jars/*.jar "$jars/"
cp "$kit/jars/jars.txt" "$jars/jars.txt"
(cd "$jars" && sha256sum --quiet --strict --check jars.txt) ||
  fail "the Delta JARs copied to $jars do not match jars.txt"

stamp=$(date +%Y%m%dT%H%M%S)
# True if $share/$1 is exactly what an earlier install.sh left there (its .kit-$1 manifest).
as_installed() {
  local manifest=$share/.kit-$1
  [ -f "$manifest" ] &&
    (cd "$share" && sha256sum --quiet --strict --check ".kit-$1" >/dev/null 2>&1) &&
    diff -q <(cd "$share" && find "$1" -type f | LC_ALL=C sort) \
      <(sed -E 's/^[0-9a-fA-F]{64}  //' "$manifest") >/dev/null
}
for dir in conf cohorts expectations; do
  say "$dir/ to $share/$dir"
  if [ -d "$share/$dir" ] && ! as_installed "$dir" &&
      ! diff -r -q "$kit/$dir" "$share/$dir" >/dev/null 2>&1; then
    say "$share/$dir was changed here: kept as $dir.before-$stamp"
    mv "$share/$dir" "$share/$dir.before-$stamp"
  fi
  rm -rf "${share:?}/$dir"
  cp -R "$kit/$dir" "$share/$dir"
  (cd "$share" && find "$dir" -type f | LC_ALL=C sort | xargs -d '\n' sha256sum > ".kit-$dir")
done

cat > "$share/activate" <<EOF
# Source this file (bash, zsh): it activates the rxcohort environment and points rxcohort at
# the configuration installed beside it. From conf/ rxcohort also finds ../expectations/ (the
# ingest's quality suites) and ../cohorts/ (the demo's study).
. "$target/bin/activate"
export RXCOHORT_CONF_DIR="$share/conf"
EOF

say "checking the installation"
# The installed package, not some checkout, must find conf/, the suites and the JARs, all
# inside the venv; the JARs as rxcohort looks for them by default (no RXCOHORT_JARS_DIR).
check_py='
import sys
from pathlib import Path

import rxcohort.jars as jars
from rxcohort.config import conf_dir
from rxcohort.pipelines.ingest import default_expectations_dir

target = Path(sys.argv[1]).resolve()
conf = conf_dir()
if conf is None:
    sys.exit("rxcohort finds no conf/ directory")
found = {
    "package": Path(jars.__file__).resolve().parent,
    "conf/": conf.resolve(),
    "expectations/": default_expectations_dir().resolve(),
    "Delta JARs": jars.jars_dir(),
}
outside = [f"{what} in {path}" for what, path in found.items() if target not in path.parents]
if outside:
    sys.exit("rxcohort finds its " + ", ".join(outside) + f", outside {target}")
jars.delta_jars()
'
env -u RXCOHORT_JARS_DIR RXCOHORT_CONF_DIR="$share/conf" "$py" -c "$check_py" "$target" ||
  fail "the installed rxcohort does not find its files (above)"
RXCOHORT_CONF_DIR="$share/conf" "$target/bin/rxcohort" check "$share/cohorts/ldn_opioids_2013.yaml" \
  >/dev/null || fail "rxcohort check of the reference study failed"

say "done: rxcohort $version in $target"
if [ -n "${RXCOHORT_JARS_DIR:-}" ]; then
  say "note: RXCOHORT_JARS_DIR=$RXCOHORT_JARS_DIR is set here and overrides $jars; unset it"
fi
cat <<EOF

To use it, in every new shell:

    source $share/activate

(or: source $target/bin/activate && export RXCOHORT_CONF_DIR=$share/conf)

then, for example:

    rxcohort check $share/cohorts/ldn_opioids_2013.yaml
    rxcohort generate /tmp/norpd --persons 2000 --ldn-rate 0.05
    rxcohort ingest /tmp/norpd --warehouse /tmp/wh
    rxcohort run $share/cohorts/ldn_opioids_2013.yaml --warehouse /tmp/wh

Without RXCOHORT_CONF_DIR, rxcohort uses built-in settings and \`rxcohort ingest\` cannot
find the quality suites.
EOF
