package kernel_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/ptdump"
)

// A ptlab capture names its kernel release (# OSRELEASE=); importing it picks
// that release's profile unless the configuration names one.
func TestImportPicksReleaseProfile(t *testing.T) {
	dump := ptdump.OSReleaseComment + "6.1.0-57-arm64\n" +
		"---[ Linear Mapping start ]---\n" +
		"0xffff000000000000-0xffff000080000000           2G PTE       RW NX SHD AF            UXN    MEM/NORMAL-TAGGED PA=0x0000000040000000\n" +
		"---[ Linear Mapping end ]---\n"
	d, err := ptdump.Parse(strings.NewReader(dump), "capture.txt", ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.OSRelease != "6.1.0-57-arm64" {
		t.Fatalf("OSRelease %q", d.OSRelease)
	}
	base, _ := kernel.Machine("qemu-virt")
	cfg, _, err := kernel.ImportDump(base, d)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cfg.Version(); err != nil || v.Name != "6.1" {
		t.Errorf("imported profile %v, %v; want 6.1", v, err)
	}
	base.Kernel = "7.3"
	if cfg, _, err = kernel.ImportDump(base, d); err != nil || cfg.Kernel != "7.3" {
		t.Errorf("an explicit kernel must win: %q %v", cfg.Kernel, err)
	}
}

// The alias shows only text+rodata together; an imported image splits it as
// the release's own image does when the machine says nothing, so _etext
// (and with it the PTE table rodata's boundary needs) lands where the real
// kernel's is.
func TestImportSplitsAliasAsRelease(t *testing.T) {
	v, err := kernel.LookupVersion("6.12")
	if err != nil {
		t.Fatal(err)
	}
	n := uint64(v.Image.Text + v.Image.Rodata) // [_text, __init_begin)
	pa := uint64(0x40200000)
	va := uint64(0xffff000000000000)
	line := func(s, e, p uint64, size, lvl, attrs string) string {
		return fmt.Sprintf("0x%016x-0x%016x %12s %s       %s PA=0x%016x\n", s, e, size, lvl, attrs, p)
	}
	rw := "RW NX SHD AF            UXN    MEM/NORMAL"
	ro := "ro NX SHD AF            UXN    MEM/NORMAL"
	dump := ptdump.OSReleaseComment + "6.12.117+deb12-arm64\n" +
		"---[ Linear Mapping start ]---\n" +
		line(va, va+pa-0x40000000, 0x40000000, "2M", "PTE", rw) +
		line(va+pa-0x40000000, va+pa-0x40000000+n, pa, fmt.Sprintf("%dK", n>>10), "PTE", ro) +
		line(va+pa-0x40000000+n, va+0x80000000, pa+n, fmt.Sprintf("%dK", (0xc0000000-pa-n)>>10), "PTE", rw) +
		"---[ Linear Mapping end ]---\n"
	d, err := ptdump.Parse(strings.NewReader(dump), "capture.txt", ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := kernel.Machine("qemu-virt")
	cfg, _, err := kernel.ImportDump(base, d)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Image.Rodata != v.Image.Rodata || cfg.Image.Text != v.Image.Text {
		t.Errorf("imported text %#x rodata %#x, want the release's %#x and %#x", cfg.Image.Text, cfg.Image.Rodata, v.Image.Text, v.Image.Rodata)
	}
}
