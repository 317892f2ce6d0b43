package kernel

import (
	"io"

	"github.com/ptlab/ptlab/ptdump"
)

// PtdumpWalk is arm64_ptdump_walk_pgd: with the arm64_ptdump_lock_key static
// key raised and init_mm's mmap lock held for writing, walk the kernel's
// tables from the start of the linear map through CPU c and print them to w
// (io.Discard for a walker that only reads). Table frees that sync with
// ptdump (pmd_free_pte_page, the collapses) wait for the walk to finish.
func (k *Kernel) PtdumpWalk(c CPU, w io.Writer) error {
	k.shared(sharedPtdumpKey)
	k.ptdumping.Add(1)
	defer func() {
		k.shared(sharedPtdumpKey)
		k.ptdumping.Add(-1)
	}()
	c.DownWrite(k.InitMM)
	defer c.UpWrite(k.InitMM)
	var pw *ptdump.Writer // nil: a walker that only reads (io.Discard) notes nothing
	if w != io.Discard {
		pw = ptdump.NewWriter(w, k.G, ptdump.KernelMarkers(k.Layout), ptdump.Options{})
	}
	return ptdump.Walk(k.PT, c, k.G, k.PT.Root(), k.Layout.PageOffset, pw)
}
