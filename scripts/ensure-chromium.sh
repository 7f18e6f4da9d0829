#!/usr/bin/env bash
# The browser test drives Debian's chromium through playwright (a browser download is
# not possible offline). Install it from Debian's packages when it is missing.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "chromium is missing and cannot be installed without root: apt-get install chromium" >&2
  exit 0  # the browser test then fails with that message; every other test still runs
fi
echo "installing Debian's chromium for the browser test..." >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
  || { $sudo apt-get update -q >/dev/null && \
       $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
