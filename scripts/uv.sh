# Sourced by the scripts: sets UV to a uv executable, installing a private one when none is on PATH.
#
# The private uv lives in .tools/uv, a virtual environment of the system python3 made with Debian's
# python3-venv: nothing is pip-installed into the system python, which Debian 12 marks externally
# managed (and whose pip is usually not installed at all). uv itself comes from PyPI, as a wheel.
ensure_uv() {
  UV=$(command -v uv || true)
  if [ -n "$UV" ]; then
    return
  fi
  UV="$PWD/.tools/uv/bin/uv"
  if [ -x "$UV" ] && "$UV" --version >/dev/null 2>&1; then
    return
  fi
  echo "setup: installing uv into .tools/uv (a private venv of $(command -v python3))"
  rm -rf .tools/uv
  if ! python3 -m venv .tools/uv; then
    echo "setup: python3 -m venv failed: install Debian's python3-venv (apt-get install python3-venv)" >&2
    return 1
  fi
  .tools/uv/bin/python -m pip install --quiet --disable-pip-version-check uv
}
