// Package trace records a real kernel's kernel-mapping events and turns them
// into a timeline ptlab can replay under every policy.
//
// A recording is one text file: a meta section (kernel release, command line,
// VMCOREINFO numbers), the probes that could and could not be defined, the
// print formats of the events, a snapshot of the state at the start (loaded
// modules with their section addresses, vmallocinfo, BPF and anchor symbols of
// kallsyms), the kernel's own ftrace text as trace_pipe printed it, the
// ring-buffer overrun counters, and the same snapshot at the end. The
// recorder is a POSIX shell script (Script) or Record.
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
	"fmt"
	"strings"
)

// ProbeDef is one kprobe or kretprobe the recorder defines as ptlab/Name.
type ProbeDef struct {
	Name string // event name (group ptlab)
	Kind byte   // 'p' or 'r'
	Sym  string
	Args []string // FETCHARGS
}

// Probes are the recorder's kprobes, in definition order.
var Probes = func() []ProbeDef {
	var p []ProbeDef
	for _, f := range []string{"ro", "rw", "x", "nx"} {
		p = append(p, ProbeDef{"set_memory_" + f, 'p', "set_memory_" + f, []string{"addr=$arg1:x64", "numpages=$arg2:s32"}})
	}
	return append(p,
		ProbeDef{"set_memory_valid", 'p', "set_memory_valid", []string{"addr=$arg1:x64", "numpages=$arg2:s32", "enable=$arg3:s32"}},
		ProbeDef{"set_direct_map_invalid", 'p', "set_direct_map_invalid_noflush", []string{"page=$arg1:x64"}},
		ProbeDef{"set_direct_map_default", 'p', "set_direct_map_default_noflush", []string{"page=$arg1:x64"}},
		ProbeDef{"set_direct_map_valid", 'p', "set_direct_map_valid_noflush", []string{"page=$arg1:x64", "nr=$arg2:u32", "valid=$arg3:u8"}},
		ProbeDef{"execmem_alloc", 'p', "execmem_alloc", []string{"type=$arg1:s32", "size=$arg2:u64"}},
		ProbeDef{"execmem_alloc_ret", 'r', "execmem_alloc", []string{"ret=$retval:x64"}},
		ProbeDef{"execmem_alloc_rw", 'p', "execmem_alloc_rw", []string{"type=$arg1:s32", "size=$arg2:u64"}},
		ProbeDef{"execmem_alloc_rw_ret", 'r', "execmem_alloc_rw", []string{"ret=$retval:x64"}},
		ProbeDef{"execmem_free", 'p', "execmem_free", []string{"addr=$arg1:x64"}},
		ProbeDef{"bpf_prog_pack_alloc", 'p', "bpf_prog_pack_alloc", []string{"size=$arg1:u32"}},
		ProbeDef{"bpf_prog_pack_alloc_ret", 'r', "bpf_prog_pack_alloc", []string{"ret=$retval:x64"}},
		ProbeDef{"bpf_prog_pack_free", 'p', "bpf_prog_pack_free", []string{"addr=$arg1:x64", "size=$arg2:u32"}},
		ProbeDef{"split_kernel_leaf_mapping", 'p', "split_kernel_leaf_mapping", []string{"start=$arg1:x64", "end=$arg2:x64"}},
	)
}()

// Tracepoints are the tracepoints the recorder enables.
var Tracepoints = []string{"vmalloc/alloc_vmap_area", "vmalloc/purge_vmap_area_lazy", "vmalloc/free_vmap_area_noflush",
	"module/module_load", "module/module_free"}

// Definition is the kprobe_events line of the probe.
func (p ProbeDef) Definition() string {
	return fmt.Sprintf("%c:ptlab/%s %s %s", p.Kind, p.Name, p.Sym, strings.Join(p.Args, " "))
}

//go:embed script.sh
var scriptTemplate string

// Script is the POSIX-sh recorder. It runs unchanged under busybox ash.
func Script() string {
	var lines []string
	syms := map[string]bool{}
	var want []string
	for _, p := range Probes {
		args := make([]string, len(p.Args))
		for i, a := range p.Args {
			args[i] = "'" + a + "'"
		}
		lines = append(lines, fmt.Sprintf("probe %s %c %s %s", p.Name, p.Kind, p.Sym, strings.Join(args, " ")))
		if !syms[p.Sym] {
			syms[p.Sym] = true
			want = append(want, p.Sym)
		}
	}
	s := strings.Replace(scriptTemplate, "@PROBES@", strings.Join(lines, "\n"), 1)
	s = strings.Replace(s, "@WANT@", "^("+strings.Join(want, "|")+")( |$)", 1)
	return strings.ReplaceAll(s, "@TRACEPOINTS@", strings.Join(Tracepoints, " "))
}
