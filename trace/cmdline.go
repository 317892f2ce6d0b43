package trace

import (
	"strings"

	"github.com/ptlab/ptlab/kernel"
)

// Rodata is the rodata= option the recorded kernel booted with (the meta
// block's cmdline; the last one counts, as each early_param occurrence
// overrides the one before), or "" when the command line has none: the
// release's built-in default (rodata_full under
// RODATA_FULL_DEFAULT_ENABLED). A replay that compares with the recording
// must boot the model the same way: "on" means rodata_full on 7.x but not
// on 6.x (arch_parse_debug_rodata, arch/arm64/include/asm/setup.h, changed
// by "arm64: refactor the rodata=xxx").
func (r *Recording) Rodata() kernel.Rodata {
	var v kernel.Rodata
	for _, w := range strings.Fields(r.Meta["cmdline"]) {
		if s, ok := strings.CutPrefix(w, "rodata="); ok {
			v = kernel.Rodata(s)
		}
	}
	return v
}
