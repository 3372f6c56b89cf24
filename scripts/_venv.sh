# Shared by scripts/*: create .venv with Python >= 3.11 and install this package into it.
#
# Installs are reproducible: requirements.lock (runtime) and requirements-dev.lock (runtime + the
# [dev] extra) pin every package to an exact version and hash (`scripts/lock` regenerates them).
# The lock is installed first (--require-hashes), then this package without its dependencies.
# If the lock no longer covers pyproject.toml (someone added a dependency and did not re-lock),
# `pip check` notices: a loud warning, and the missing packages are installed unpinned, so work
# goes on; with FEED_LOCK_STRICT=1 (for a release) that is an error instead.
ensure_venv() {
  local extra="$1" py="${PYTHON:-}"
  if [ ! -x .venv/bin/python ]; then
    if [ -z "$py" ]; then
      for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
          py="$candidate"; break
        fi
      done
    fi
    [ -n "$py" ] || { echo "Python 3.11 or newer is required" >&2; exit 1; }
    "$py" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
  fi
  local lock="requirements.lock"
  [ "$extra" = "[dev]" ] && lock="requirements-dev.lock"
  # Reinstall only when the dependency list or its lock changed since the last install.
  local stamp=".venv/.installed${extra}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || { [ -f "$lock" ] && [ "$lock" -nt "$stamp" ]; }; then
    local pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
    if [ -f "$lock" ]; then
      "${pip[@]}" --require-hashes -r "$lock"
      "${pip[@]}" --no-deps -e ".${extra}"
      local problems
      if ! problems="$(.venv/bin/python -m pip check 2>&1)"; then
        echo "scripts: $lock does not cover pyproject.toml — run scripts/lock and commit the result:" >&2
        echo "$problems" | sed 's/^/  /' >&2
        if [ "${FEED_LOCK_STRICT:-}" = 1 ]; then
          exit 1
        fi
        echo "scripts: installing what is missing unpinned for now" >&2
        "${pip[@]}" -e ".${extra}"
      fi
    else
      echo "scripts: no $lock; installing unpinned (run scripts/lock)" >&2
      "${pip[@]}" -e ".${extra}"
    fi
    touch "$stamp"
  fi
}
