package trace

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/workload"
)

// lazyRecording is a recording where a vmalloc area at a is freed, then a
// second area is allocated at a: after the purge of a (as the kernel can),
// or before it (as it cannot: the VA is busy until the purge) when
// purgeFirst is false.
func lazyRecording(purgeFirst bool) string {
	const a uint64 = 0xffff8000c0000000
	alloc := func(ts string, va uint64) string {
		return fmt.Sprintf("              sh-1       [000] .....    %s: alloc_vmap_area: va_start: %d size=20480 align=32768 vstart=0xffff800080000000 vend=0xffffc1ffbf800000 failed=0\n", ts, va)
	}
	purge := func(ts string) string {
		return fmt.Sprintf("          insmod-3       [001] .....    %s: purge_vmap_area_lazy: start=%#x end=%#x num_purged=1\n", ts, a, a+20480)
	}
	var b strings.Builder
	b.WriteString("# ptlab-trace 1\n=== ptlab-trace meta\nkernel 6.12.117+deb12-arm64\nmachine aarch64\n=== ptlab-trace probes\nok vmalloc/alloc_vmap_area tracepoint\n=== ptlab-trace trace\n")
	b.WriteString("              sh-1       [000] .....    10.000000: tracing_mark_write: ptlab-mark before\n")
	b.WriteString(alloc("10.000100", a))
	b.WriteString(fmt.Sprintf("     kworker/1:1-2       [001] .....    10.000200: free_vmap_area_noflush: va_start=%#x nr_lazy=5 nr_lazy_max=16384\n", a))
	if purgeFirst {
		b.WriteString(purge("10.000300"))
		b.WriteString(alloc("10.000400", a))
	} else {
		b.WriteString(alloc("10.000300", a))
		b.WriteString(purge("10.000400"))
	}
	b.WriteString("              sh-1       [000] .....    10.000500: tracing_mark_write: ptlab-mark after\n")
	return b.String()
}

// TestReplayLazyFree: a pinned replay keeps a freed area's VA busy until the
// recorded purge (purge_vmap_area_lazy), as mm/vmalloc.c does
// (free_vmap_area_noflush queues, __purge_vmap_area_lazy releases): the
// recorded order replays, the impossible one is refused.
func TestReplayLazyFree(t *testing.T) {
	for _, purgeFirst := range []bool{true, false} {
		rec, err := Parse(strings.NewReader(lazyRecording(purgeFirst)), "lazy")
		if err != nil {
			t.Fatal(err)
		}
		tl, err := Build(rec, Options{From: "before", To: "after", Pinned: true})
		if err != nil {
			t.Fatal(err)
		}
		var ops []string
		for _, o := range tl.Replay.Ops {
			ops = append(ops, o.Op)
		}
		want := "vmalloc vfree purge vmalloc"
		if !purgeFirst {
			want = "vmalloc vfree vmalloc purge"
		}
		if got := strings.Join(ops, " "); got != want {
			t.Fatalf("purge first %v: ops %q, want %q", purgeFirst, got, want)
		}
		s := &workload.Scenario{Name: "lazy", Machine: "qemu-virt", Presets: []string{"mainline"},
			Work: workload.Workload{Modules: "none"}, Replay: tl.Replay}
		res, _, err := workload.RunReplay(s, "mainline", nil)
		if err != nil {
			t.Fatal(err)
		}
		if purgeFirst && len(res.Failed) > 0 {
			t.Errorf("the recorded order was refused: %v", res.Failed)
		}
		if !purgeFirst && (len(res.Failed) != 1 || !strings.Contains(res.Failed[0], "vmalloc")) {
			t.Errorf("an allocation on VA still queued for a purge: failures %v, want the vmalloc refused", res.Failed)
		}
	}
}
