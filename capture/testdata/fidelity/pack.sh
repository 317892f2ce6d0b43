#!/bin/sh
# Keep what the fidelity test needs of each serial log (boot-all.sh), as
# NAME.log.xz beside this script: pack.sh LOGDIR.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
for f in "$1"/*.log; do
	name=$(basename "$f" .log)
	grep -q '^=== DONE rc=0' "$f" || { echo "skip $name (no DONE rc=0)" >&2; continue; }
	awk '/^=== BEGIN (uname|cmdline|iomem|kallsyms|memblock-memory|memblock-reserved|vmallocinfo|dmesg-facts|capture|modules-load|capture-after-modules|modules-sections)$/ {on=1}
	     on {print}
	     /^=== END / {on=0}' "$f" | xz -9e > "$here/$name.log.xz"
done
ls -l "$here"/*.log.xz | awk '{s+=$5} END {print NR " files, " s " bytes"}'
