// Package trace records a real kernel's kernel-mapping events and turns them
// into a timeline ptlab can replay under every policy.
//
// A recording is one text file: a meta section (kernel release, command line,
// VMCOREINFO numbers), the probes that could and could not be defined, the
// print formats of the events, a snapshot of the state at the start (loaded
// modules with their section addresses, vmallocinfo, BPF and anchor symbols of
// kallsyms), the kernel's own ftrace text as trace_pipe printed it, the
// ring-buffer overrun counters, and the same snapshot at the end. The
// recorder is a POSIX shell script (Script) or `ptlab trace record`.
//
// The events come from these kernel sources:
//   - vmalloc:alloc_vmap_area, purge_vmap_area_lazy, free_vmap_area_noflush
//     (include/trace/events/vmalloc.h; alloc_vmap_area prints its address in
//     decimal, "va_start: %lu")
//   - module:module_load (name and taint flags only, no address) and
//     module:module_free (include/trace/events/module.h); load_module fires
//     module_load after the module's memory is allocated and protected
//     (complete_formation), just before do_init_module; free_module fires
//     module_free before it frees the memory (kernel/module/main.c)
//   - kprobes and kretprobes (kernel/trace/trace_kprobe.c, syntax in
//     Documentation/trace/kprobetrace.rst: "p:GRP/EVENT SYM $argN:TYPE",
//     "r:GRP/EVENT SYM $retval:TYPE") on set_memory_ro/rw/x/nx/valid
//     (arch/arm64/mm/pageattr.c), set_direct_map_{invalid,default,valid}_noflush
//     (same file, a struct page pointer), execmem_alloc/execmem_free
//     (mm/execmem.c), bpf_prog_pack_alloc/bpf_prog_pack_free
//     (kernel/bpf/core.c) and split_kernel_leaf_mapping (arch/arm64/mm/mmu.c,
//     6.18 and later). There is no tracepoint for any of these.
package trace

import (
	_ "embed"
)

//go:embed script.sh
var script string

// Script is the POSIX-sh recorder. It runs unchanged under busybox ash.
func Script() string { return script }
