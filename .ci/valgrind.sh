#!/usr/bin/env bash
# Debian's valgrind (with its headers, which the simulated instrument's client requests are
# compiled against), for tests/test_simulated.py; installed with apt-get where missing (as root).
set -euo pipefail
if command -v valgrind >/dev/null && [[ -f /usr/include/valgrind/callgrind.h ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "valgrind.sh: valgrind is missing; install Debian's valgrind" >&2
    exit 2
fi
echo "valgrind.sh: installing valgrind" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
