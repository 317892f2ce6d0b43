package kernel

import (
	"slices"
	"sort"
	"testing"

	"pgregory.net/rapid"
)

// linearFree is the vmap free space as ptlab kept it before the augmented
// tree: a sorted slice of merged spans, first-fit scanned per allocation. It
// stays as the oracle the tree must agree with.
type linearFree struct{ free []vaSpan }

func (v *linearFree) carve(s, e uint64) {
	out := v.free[:0:0]
	for _, f := range v.free {
		if e <= f.start || s >= f.end {
			out = append(out, f)
			continue
		}
		if f.start < s {
			out = append(out, vaSpan{f.start, s})
		}
		if e < f.end {
			out = append(out, vaSpan{e, f.end})
		}
	}
	v.free = out
}

func (v *linearFree) release(s, e uint64) {
	i := sort.Search(len(v.free), func(i int) bool { return v.free[i].start >= e })
	if i > 0 && v.free[i-1].end == s {
		v.free[i-1].end = e
		if i < len(v.free) && v.free[i].start == e {
			v.free[i-1].end = v.free[i].end
			v.free = append(v.free[:i], v.free[i+1:]...)
		}
		return
	}
	if i < len(v.free) && v.free[i].start == e {
		v.free[i].start = s
		return
	}
	v.free = append(v.free, vaSpan{})
	copy(v.free[i+1:], v.free[i:])
	v.free[i] = vaSpan{s, e}
}

func (v *linearFree) alloc(size, align, vstart, vend uint64) (uint64, bool) {
	for _, f := range v.free {
		if f.end <= vstart {
			continue
		}
		if f.start >= vend {
			break
		}
		a := max(f.start, vstart)
		a = (a + align - 1) &^ (align - 1)
		if a >= f.start && a+size > a && a+size <= min(f.end, vend) {
			v.carve(a, a+size)
			return a, true
		}
	}
	return 0, false
}

func spansOf(f *vmapTree) []vaSpan {
	var out []vaSpan
	f.each(func(s, e uint64) { out = append(out, vaSpan{s, e}) })
	return out
}

// checkTree verifies the treap's order, heap and subtree_max_size invariants
// and returns the subtree's size.
func checkTree(t *rapid.T, f *vmapTree, x int32, lo, hi uint64) int {
	if x == 0 {
		return 0
	}
	nd := f.n[x]
	if nd.start < lo || nd.end > hi || nd.start >= nd.end {
		t.Fatalf("node [%#x, %#x) out of order in [%#x, %#x)", nd.start, nd.end, lo, hi)
	}
	m := nd.end - nd.start
	for _, c := range []int32{nd.l, nd.r} {
		if c != 0 {
			if f.n[c].prio > nd.prio {
				t.Fatalf("heap order broken under [%#x, %#x)", nd.start, nd.end)
			}
			m = max(m, f.n[c].max)
		}
	}
	if m != nd.max {
		t.Fatalf("subtree_max_size of [%#x, %#x) is %#x, want %#x", nd.start, nd.end, nd.max, m)
	}
	return 1 + checkTree(t, f, nd.l, lo, nd.start) + checkTree(t, f, nd.r, nd.end, hi)
}

// TestVmapTreeMatchesLinear drives the augmented tree and the old linear
// allocator with the same random allocations (sizes, alignments, windows),
// frees (whole or partial areas, in any order) and carves, and requires the
// same address from every allocation and the same free spans after every
// operation.
func TestVmapTreeMatchesLinear(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const page = 4096
		base := rapid.Uint64Range(1, 1<<20).Draw(t, "base") * page
		size := rapid.Uint64Range(1, 1<<14).Draw(t, "pages") * page
		tree := newVmapTree(base, base+size)
		lin := &linearFree{free: []vaSpan{{base, base + size}}}
		var busy []vaSpan
		areas := newVmapTree(0, 0) // the busy tree, with one area per allocation
		live := func() []vaSpan {
			var out []vaSpan
			areas.eachArea(func(a *VMArea) { out = append(out, vaSpan{a.Addr, a.Addr + a.Size}) })
			return out
		}
		ops := rapid.IntRange(1, 300).Draw(t, "ops")
		for i := 0; i < ops; i++ {
			switch op := rapid.IntRange(0, 9).Draw(t, "op"); {
			case op < 5:
				sz := rapid.Uint64Range(1, 64).Draw(t, "size") * page
				if rapid.Bool().Draw(t, "big") {
					sz = rapid.Uint64Range(1, size/page).Draw(t, "bigsize") * page
				}
				align := uint64(page) << rapid.IntRange(0, 12).Draw(t, "alignshift")
				vs, ve := base, base+size
				if rapid.Bool().Draw(t, "window") {
					vs = base + rapid.Uint64Range(0, size/page).Draw(t, "vstart")*page
					ve = vs + rapid.Uint64Range(0, size/page).Draw(t, "vlen")*page
				}
				a1, ok1 := tree.alloc(sz, align, vs, ve)
				a2, ok2 := lin.alloc(sz, align, vs, ve)
				if a1 != a2 || ok1 != ok2 {
					t.Fatalf("alloc(%#x, align %#x, [%#x, %#x)): tree %#x %v, linear %#x %v", sz, align, vs, ve, a1, ok1, a2, ok2)
				}
				if ok1 {
					busy = append(busy, vaSpan{a1, a1 + sz})
					areas.addArea(&VMArea{Addr: a1, Size: sz})
				}
			case op < 9 && len(busy) > 0:
				j := rapid.IntRange(0, len(busy)-1).Draw(t, "victim")
				b := busy[j]
				busy = slices.Delete(busy, j, j+1)
				if a := areas.areaAt(b.start); a == nil || a.Addr != b.start || a.Size != b.end-b.start {
					t.Fatalf("areaAt(%#x) = %v, want [%#x, %#x)", b.start, a, b.start, b.end)
				}
				areas.removeArea(b.start)
				// free all of it, or split it and keep a part busy
				if n := (b.end - b.start) / page; n > 1 && rapid.Bool().Draw(t, "partial") {
					cut := b.start + rapid.Uint64Range(1, n-1).Draw(t, "cut")*page
					if rapid.Bool().Draw(t, "keeplow") {
						busy = append(busy, vaSpan{b.start, cut})
						areas.addArea(&VMArea{Addr: b.start, Size: cut - b.start})
						b.start = cut
					} else {
						busy = append(busy, vaSpan{cut, b.end})
						areas.addArea(&VMArea{Addr: cut, Size: b.end - cut})
						b.end = cut
					}
				}
				tree.release(b.start, b.end)
				lin.release(b.start, b.end)
			default:
				s := base + rapid.Uint64Range(0, size/page).Draw(t, "cs")*page
				e := s + rapid.Uint64Range(1, 64).Draw(t, "cl")*page // the old carve splits a span at an empty range
				tree.carve(s, e)
				lin.carve(s, e)
				// what was carved is reserved for good: drop it from busy
				// bookkeeping by never freeing overlapping areas again.
				busy = slices.DeleteFunc(busy, func(b vaSpan) bool { return b.start < e && s < b.end })
				// and stays in the busy tree
			}
			if got := spansOf(tree); !slices.Equal(got, lin.free) {
				t.Fatalf("after op %d: tree spans %x, linear %x", i, got, lin.free)
			}
			if n := checkTree(t, tree, tree.root, 0, ^uint64(0)); n != tree.spans {
				t.Fatalf("tree holds %d nodes, counts %d", n, tree.spans)
			}
			// the busy tree: every area found at its first and last byte,
			// nothing found in free space.
			spans := live()
			if n := checkTree(t, areas, areas.root, 0, ^uint64(0)); n != len(spans) || n != areas.spans {
				t.Fatalf("busy tree holds %d nodes, walks %d, counts %d", n, len(spans), areas.spans)
			}
			for _, b := range spans {
				for _, va := range []uint64{b.start, b.end - 1} {
					if a := areas.areaAt(va); a == nil || a.Addr != b.start {
						t.Fatalf("areaAt(%#x) = %v, want the area at %#x", va, a, b.start)
					}
				}
			}
			for _, f := range lin.free {
				if a := areas.areaAt(f.start); a != nil {
					t.Fatalf("areaAt(%#x) in free space = area at %#x", f.start, a.Addr)
				}
			}
		}
	})
}

// TestVmapTreeNoAllocs: once the pool has grown, allocations and frees that
// split and merge spans allocate nothing.
func TestVmapTreeNoAllocs(t *testing.T) {
	f := newVmapTree(0x10000000, 0x20000000)
	var addrs []uint64
	for i := 0; i < 1000; i++ {
		a, ok := f.alloc(uint64(1+i%7)*4096, 4096, 0x10000000, 0x20000000)
		if !ok {
			t.Fatal("alloc failed")
		}
		addrs = append(addrs, a)
	}
	for i := 0; i < len(addrs); i += 2 {
		f.release(addrs[i], addrs[i]+uint64(1+i%7)*4096)
	}
	n := testing.AllocsPerRun(100, func() {
		a, _ := f.alloc(4096, 4096, 0x10000000, 0x20000000)
		b, _ := f.alloc(8192, 8192, 0x18000000, 0x20000000)
		f.release(a, a+4096)
		f.release(b, b+8192)
	})
	if n != 0 {
		t.Fatalf("%v allocations per alloc/free pair", n)
	}
}
