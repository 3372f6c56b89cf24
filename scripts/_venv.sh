# Shared by scripts/*: create .venv with Python >= 3.11 and install this package into it.
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
  # Reinstall only when the dependency list changed since the last install.
  local stamp=".venv/.installed${extra}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra}"
    touch "$stamp"
  fi
}
