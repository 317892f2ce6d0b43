package bench

import "github.com/ptlab/ptlab/pgtable"

// cached is ptlab's single-threaded door with the walk cache; uncached is
// the same door without it: every walk starts at the root, as gVisor's do.
var (
	cached   pgtable.Door = door
	uncached pgtable.Door = pgtable.Direct{}
)
