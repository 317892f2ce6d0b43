package bench

import "github.com/ptlab/ptlab/pgtable"

// cached is ptlab's single-threaded door with the walk cache; uncached
// walks from the root every time (before the explicit switch, the Atomic door).
var (
	cached   pgtable.Door = door
	uncached pgtable.Door = pgtable.Atomic{}
)
