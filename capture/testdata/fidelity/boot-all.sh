#!/bin/sh
# Boot every configuration of the fidelity suite under QEMU and keep the
# serial logs: boot-all.sh LOGDIR PTLAB_ARM64 [NAME...]. One guest at a time.
# configs.txt: NAME KERNEL SUITE CPU MEM CMDLINE... ("-" for no suite).
set -u
here=$(cd "$(dirname "$0")" && pwd)
runner=$here/../../../tools/qemu-arm64-guest.sh
logdir=$1 bin=$2
shift 2
mkdir -p "$logdir"
work=${PTLAB_QEMU_WORKDIR:-/tmp/qemu-fidelity}
grep -v '^#' "$here/configs.txt" | while read -r name kpkg suite cpu mem cmdline; do
	[ -n "$name" ] || continue
	if [ $# -gt 0 ]; then
		case " $* " in *" $name "*) ;; *) continue ;; esac
	fi
	[ -s "$logdir/$name.log" ] && continue
	set -- "$@"
	ext=""
	[ "$suite" = - ] || ext="-E $suite"
	echo "$(date -u +%T) $name" >&2
	# shellcheck disable=SC2086
	"$runner" -q -w "$work" -k "$kpkg" $ext -c "$cpu" -m "$mem" -a "$cmdline" -t 900 \
		-f "$bin:/bin/ptlab" -r "$here/guest.sh" -o "$logdir/$name.log.tmp" </dev/null &&
		mv "$logdir/$name.log.tmp" "$logdir/$name.log"
done
