package kernel

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
)

// bpf_prog_pack (v6.10+): small JIT images share one 2 MiB ROX pack, in
// 64-byte chunks; the pack goes when its last program does. 6.1 gives every
// image its own vmalloc area.
func TestBPFProgPack(t *testing.T) {
	k := boot(t, "bbml2-server", func(c *Config) { c.Kernel = "7.3" })
	c := &PlainCPU{}
	areas := len(k.VM.Areas())
	var progs []*JITText
	for i := 0; i < 20; i++ {
		j, err := k.LoadJITText(c, ExecmemBPF, 1000+uint64(i)*100)
		if err != nil {
			t.Fatal(err)
		}
		progs = append(progs, j)
	}
	if k.BPFPacks() != 1 || len(k.VM.Areas()) != areas+1 {
		t.Fatalf("20 programs: %d packs, %d new areas", k.BPFPacks(), len(k.VM.Areas())-areas)
	}
	a := k.FindVMArea(progs[0].Addr)
	if a == nil || a.Size < bpfProgPackSize {
		t.Fatalf("pack area %+v", a)
	}
	for i, j := range progs {
		if j.Addr&(1<<bpfProgChunkShift-1) != 0 || (i > 0 && j.Addr != progs[i-1].Addr+bpfPackSize(progs[i-1].Size)) {
			t.Errorf("program %d at %#x", i, j.Addr)
		}
		_, e, ok := k.PT.Translate(c, j.Addr)
		if !ok || e.Desc&arm64.PTERdonly == 0 || e.Desc&arm64.PTEPXN != 0 {
			t.Errorf("program %d not ROX: %#x", i, e.Desc)
		}
		// One content value per page: the text of a live program on it.
		if got, _ := k.Content(c, j.Addr); got < j.Object || got > progs[len(progs)-1].Object || !k.Exec.Live(got) {
			t.Errorf("program %d: content %d, want a live program from %d on", i, got, j.Object)
		}
	}
	// Freeing the first program re-fills its chunks with traps; the page
	// it shares with the second still holds the second's text.
	if err := k.FreeJITText(c, progs[0]); err != nil {
		t.Fatal(err)
	}
	if got, _ := k.Content(c, progs[1].Addr); got == progs[0].Object || !k.Exec.Live(got) {
		t.Errorf("after freeing program 0, program 1's page holds %d", got)
	}
	// An image freed chunk range is reused first-fit.
	j, err := k.LoadJITText(c, ExecmemBPF, 100)
	if err != nil || j.Addr != progs[0].Addr {
		t.Errorf("reuse: %#x, %v; want %#x", j.Addr, err, progs[0].Addr)
	}
	progs[0] = j
	for _, j := range progs {
		if err := k.FreeJITText(c, j); err != nil {
			t.Fatal(err)
		}
	}
	if k.BPFPacks() != 0 || len(k.VM.Areas()) != areas {
		t.Errorf("all freed: %d packs, %d areas left over", k.BPFPacks(), len(k.VM.Areas())-areas)
	}
	// Larger than a pack: an allocation of its own.
	big, err := k.LoadJITText(c, ExecmemBPF, 3<<20)
	if err != nil || big.Packed || k.BPFPacks() != 0 {
		t.Errorf("oversized image: %+v %v, %d packs", big, err, k.BPFPacks())
	}
	// 6.1 has no packs.
	k61 := boot(t, "qemu-virt", func(c *Config) { c.Kernel = "6.1" })
	areas = len(k61.VM.Areas())
	for i := 0; i < 3; i++ {
		if _, err := k61.LoadJITText(c, ExecmemBPF, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if k61.BPFPacks() != 0 || len(k61.VM.Areas()) != areas+3 {
		t.Errorf("6.1: %d packs, %d areas", k61.BPFPacks(), len(k61.VM.Areas())-areas)
	}
}
