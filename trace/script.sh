#!/bin/sh
# ptlab trace recorder: records the kernel-mapping events of a running arm64
# kernel into one text file that `ptlab trace import` reads. POSIX sh (runs
# under busybox ash); needs root and a writable tracefs, nothing else.
#
#   sh ptlab-trace.sh [-o FILE] [-b KB] [COMMAND [ARG...]]
#
# With COMMAND it traces while COMMAND runs; without, until SIGINT/SIGTERM.
# COMMAND sees PTLAB_TRACEFS; `echo ptlab-mark NAME > $PTLAB_TRACEFS/trace_marker`
# puts a named mark in the trace (`ptlab trace import --from NAME --to NAME`).
#
# Events (see `ptlab trace script --help` for the kernel sources):
#   kprobes   set_memory_{ro,rw,x,nx,valid}, set_direct_map_*_noflush,
#             execmem_alloc/execmem_free, bpf_prog_pack_alloc/free,
#             split_kernel_leaf_mapping: each guarded by available_filter_functions
#             (or kallsyms); a missing symbol is listed, not fatal
#   tracepoints vmalloc:alloc_vmap_area, vmalloc:purge_vmap_area_lazy,
#             vmalloc:free_vmap_area_noflush, module:module_load, module:module_free
# Snapshots at start and end: /proc/modules, /sys/module/*/sections/*,
# /proc/vmallocinfo, BPF symbols of /proc/kallsyms.
set -u
OUT=ptlab-trace.txt
BUFKB=8192
usage() { echo "usage: $0 [-o FILE] [-b BUFFER_KB_PER_CPU] [COMMAND [ARG...]]" >&2; exit 2; }
while getopts o:b:h opt; do
	case $opt in
	o) OUT=$OPTARG ;;
	b) BUFKB=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))

T=
for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do
	if [ -e "$d/kprobe_events" ]; then T=$d; break; fi
done
if [ -z "$T" ]; then
	mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null && T=/sys/kernel/tracing
fi
if [ -z "$T" ] || [ ! -w "$T/kprobe_events" ]; then
	echo "ptlab-trace: no writable tracefs (root? CONFIG_KPROBE_EVENTS?)" >&2
	exit 1
fi
PIPE=$OUT.pipe.$$
PROBES=$OUT.probes.$$
: >"$OUT" || exit 1
: >"$PROBES"

sec() { echo "=== ptlab-trace $*"; }
# put VALUE FILE / add VALUE FILE: write or append a tracefs file; failure
# (a missing event, a refused probe) is the caller's to report, not stderr's.
put() { { echo "$1" >"$2"; } 2>/dev/null; }
add() { { echo "$1" >>"$2"; } 2>/dev/null; }

# has SYM: the symbol can be probed. available_filter_functions and
# kallsyms are read once (each read walks every function: seconds on a slow
# machine), keeping only the symbols probed below.
SYMS=$OUT.syms.$$
WANT='@WANT@'
{
	grep -E "$WANT" "$T/available_filter_functions" 2>/dev/null
	awk '$2 == "t" || $2 == "T" { print $3 }' /proc/kallsyms 2>/dev/null | grep -E "$WANT"
} >"$SYMS"
has() {
	grep -q -e "^$1\$" -e "^$1 " "$SYMS"
}

# probe NAME p|r SYM FETCHARGS...: define ptlab/NAME
probe() {
	name=$1 kind=$2 sym=$3
	shift 3
	if ! has "$sym"; then
		echo "missing $name $sym: not in available_filter_functions or kallsyms" >>"$PROBES"
		return
	fi
	if add "$kind:ptlab/$name $sym $*" "$T/kprobe_events"; then
		echo "ok $name $kind $sym $*" >>"$PROBES"
	else
		echo "failed $name $sym: kprobe_events refused '$kind:ptlab/$name $sym $*'" >>"$PROBES"
	fi
}

# event GROUP/NAME: enable a tracepoint if the kernel has it
event() {
	if [ -e "$T/events/$1/enable" ] && put 1 "$T/events/$1/enable"; then
		echo "ok $1 tracepoint" >>"$PROBES"
	else
		echo "missing $1: no such tracepoint" >>"$PROBES"
	fi
}

snapshot() {
	sec "$1 modules"
	cat /proc/modules
	sec "$1 sections"
	for d in /sys/module/*/sections; do
		[ -d "$d" ] || continue
		m=${d%/sections}
		m=${m##*/}
		for f in "$d"/.* "$d"/*; do
			[ -f "$f" ] || continue
			printf '%s %s %s\n' "$m" "${f##*/}" "$(cat "$f")"
		done
	done
	sec "$1 vmallocinfo"
	cat /proc/vmallocinfo
	sec "$1 kallsyms"
	grep -e '\[bpf\]' -e ' _text$' -e ' _stext$' -e ' _etext$' -e ' __start_rodata$' \
		-e ' __init_begin$' -e ' _end$' -e ' swapper_pg_dir$' /proc/kallsyms
}

cleanup() {
	put 0 "$T/events/ptlab/enable"
	for e in @TRACEPOINTS@; do
		put 0 "$T/events/$e/enable"
	done
	while read -r st name rest; do
		[ "$st" = ok ] || continue
		case $name in */*) continue ;; esac
		add "-:ptlab/$name" "$T/kprobe_events"
	done <"$PROBES"
	rm -f "$PIPE" "$PROBES" "$SYMS"
}

{
	echo "# ptlab-trace 1"
	sec meta
	echo "kernel $(uname -r)"
	echo "machine $(uname -m)"
	echo "cmdline $(cat /proc/cmdline)"
	echo "tracefs $T"
	echo "buffer_size_kb $BUFKB"
	echo "trace_clock $(cat "$T/trace_clock")"
	echo "kptr_restrict $(cat /proc/sys/kernel/kptr_restrict 2>/dev/null)"
	echo "bpf_jit_kallsyms $(cat /proc/sys/net/core/bpf_jit_kallsyms 2>/dev/null)"
	grep -e '^MemTotal' -e '^Vmalloc' /proc/meminfo
	# VMCOREINFO (PHYS_OFFSET, VA_BITS, KERNELOFFSET, ...) from the head of /proc/kcore
	if [ -r /proc/kcore ] && command -v strings >/dev/null 2>&1; then
		dd if=/proc/kcore bs=4096 count=16 2>/dev/null | strings | grep -e '^NUMBER(' -e '^KERNELOFFSET=' -e '^PAGESIZE=' -e '^SIZE(page)=' -e '^OSRELEASE='
	fi
} >>"$OUT"

echo 0 >"$T/tracing_on"
for e in ptlab @TRACEPOINTS@; do
	put 0 "$T/events/$e/enable"
done
# Stale ptlab probes of an earlier run that did not clean up.
grep '^[pr]:ptlab/' "$T/kprobe_events" 2>/dev/null | while read -r def rest; do
	add "-:${def#?:}" "$T/kprobe_events"
done
put "$BUFKB" "$T/buffer_size_kb"
put nop "$T/current_tracer"

@PROBES@
if grep -q '^ok ' "$PROBES"; then
	echo 1 >"$T/events/ptlab/enable"
fi
for e in @TRACEPOINTS@; do
	event "$e"
done

{
	sec probes
	cat "$PROBES"
	sec formats
	for f in "$T"/events/ptlab/*/format "$T"/events/vmalloc/*/format "$T"/events/module/module_load/format \
		"$T"/events/module/module_free/format; do
		[ -f "$f" ] || continue
		grep -e '^name:' -e '^print fmt:' "$f"
	done
} >>"$OUT"

# Tracing runs while the start snapshot is taken, so nothing that changes
# under the snapshot is lost; the "start" mark says where it ended.
echo >"$T/trace"
cat "$T/trace_pipe" >"$PIPE" &
PIPEPID=$!
echo 1 >"$T/tracing_on"
put "ptlab-mark snapshot" "$T/trace_marker"
snapshot start >>"$OUT"
put "ptlab-mark start" "$T/trace_marker"
PTLAB_TRACEFS=$T
export PTLAB_TRACEFS

rc=0
if [ $# -gt 0 ]; then
	trap 'echo "ptlab-trace: interrupted" >&2' INT TERM
	"$@"
	rc=$?
else
	stop=
	trap 'stop=1' INT TERM
	echo "ptlab-trace: recording to $OUT; stop with SIGINT or SIGTERM (pid $$)" >&2
	while [ -z "$stop" ]; do sleep 1; done
fi
trap '' INT TERM
put "ptlab-mark end" "$T/trace_marker"
echo 0 >"$T/tracing_on"
sleep 1
kill "$PIPEPID" 2>/dev/null
wait "$PIPEPID" 2>/dev/null

{
	sec trace
	cat "$PIPE"
	sec stats
	for c in "$T"/per_cpu/cpu*; do
		[ -f "$c/stats" ] || continue
		echo "${c##*/} $(grep -e '^overrun' -e '^dropped' "$c/stats" | tr '\n' ' ')"
	done
	snapshot end
	sec "end rc=$rc"
} >>"$OUT"
cleanup
echo "ptlab-trace: wrote $OUT" >&2
exit $rc
