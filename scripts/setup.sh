# Sourced by scripts/test-all.sh and scripts/demo.sh: installs what the tests and the demo need on a
# fresh Debian machine. Idempotent and quiet when everything is already there.

# Installs every package of scripts/apt-packages.txt that is not installed yet (needs root).
ensure_apt_packages() {
  local wanted missing=()
  wanted=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/apt-packages.txt | awk '{print $1}')
  for p in $wanted; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "setup: these Debian packages are missing: ${missing[*]}; run as root (or install them) and try again" >&2
      return 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# A Python virtual environment with the independent checkers' libraries (not ours: RFC 8785 from
# Trail of Bits, Ed25519 from pyca/cryptography, blake3, RFC 9162 Merkle trees from pymerkle) and
# virt-firmware (Secure Boot key enrolment for the 32-bit OVMF boot tests).
ensure_python_venv() {
  VENV=target/pyvenv
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import rfc8785, cryptography, blake3, pymerkle, virt.firmware.vars' 2>/dev/null; then
    echo "setup: creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/python-requirements.txt
  fi
  export LAPTEROP_PYTHON="$PWD/$VENV/bin/python"
}
