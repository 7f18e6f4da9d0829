#!/usr/bin/env bash
# Programs the tests drive that PyPI cannot give: Debian's chromium (the browser test,
# through playwright: a browser download is not possible offline), ffmpeg with ffprobe
# (the real-recorder and media tests), systemd-analyze (the units' check), and Ceph's
# RADOS Gateway with a monitor and an OSD (the tests against a second S3
# implementation: scripts/ceph-s3.sh). Installs what is missing from Debian's packages.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
{ command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; } || missing+=(ffmpeg)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
for pair in ceph-mon:ceph-mon ceph-osd:ceph-osd ceph:ceph-common radosgw:radosgw; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "missing ${missing[*]}; cannot install without root: apt-get install ${missing[*]}" >&2
  exit 0  # the tests that need them fail with that message; every other test still runs
fi
echo "installing Debian's ${missing[*]} for the tests..." >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
  || { $sudo apt-get update -q >/dev/null && \
       $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
