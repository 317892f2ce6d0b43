# Guest script of the fidelity suite (run by tools/qemu-arm64-guest.sh -r):
# what the real kernel booted, and its tables, for ptlab to boot the same.
section uname uname -r
section cmdline cat /proc/cmdline
section iomem cat /proc/iomem
section kallsyms sh -c 'grep -E " (_text|_stext|_etext|__start_rodata|__end_rodata|__inittext_begin|__init_begin|__init_end|__initdata_begin|_data|__bss_start|__bss_stop|_end|_sdata|swapper_pg_dir|init_pg_dir|idmap_pg_dir|reserved_pg_dir|tramp_pg_dir|__kfence_pool|empty_zero_page|bm_pte|bm_pmd|bm_pud)$" /proc/kallsyms'
section memblock-memory cat /sys/kernel/debug/memblock/memory
section memblock-reserved cat /sys/kernel/debug/memblock/reserved
section vmallocinfo cat /proc/vmallocinfo
section dmesg-facts sh -c 'dmesg | grep -iE "kfence|module region|Memory:|Virtual kernel|rodata|BBM|KASLR|CPU features|vmemmap|Machine model" || true'
section capture sh -c '/bin/ptlab capture --pa --tables -o /tmp/pa.txt 2>/tmp/pa.err; rc=$?; cat /tmp/pa.txt; cat /tmp/pa.err >&2; exit $rc'
section modules-load sh -c 'for m in $MODS; do insmod "$MODDIR/$m.ko" || exit 1; done; cat /proc/modules'
section capture-after-modules sh -c '/bin/ptlab capture --pa --tables -o /tmp/pa2.txt 2>/dev/null; rc=$?; cat /tmp/pa2.txt; exit $rc'
section modules-sections sh -c 'for m in $MODS; do for s in /sys/module/$m/sections/.text /sys/module/$m/sections/.rodata /sys/module/$m/sections/.data; do [ -e $s ] && echo "$m $(basename $s) $(cat $s)"; done; done'
exit 0
