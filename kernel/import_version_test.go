package kernel_test

import (
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
