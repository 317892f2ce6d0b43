package kernel

// vmapTree holds disjoint VA spans keyed by start address, as the kernel's
// vmap_area rbtrees do. The free space (free_vmap_area_root in mm/vmalloc.c)
// keeps merged free spans, each node augmented with the largest span size in
// its subtree (subtree_max_size), so the lowest-address fit is found in
// O(log n) and a freed span merges with its neighbours in O(log n). The busy
// areas (vmap_area_root) use the same tree with each node naming its area.
//
// The kernel uses an augmented red-black tree; this is a treap with
// priorities drawn from a splitmix64 sequence seeded at zero, so the shape
// is a pure function of the operation sequence. Nodes live in a pool
// addressed by int32 index (0 is the nil node) and freed nodes are reused,
// so steady-state operations allocate nothing.
type vmapTree struct {
	n     []vfNode
	root  int32
	spare int32  // head of the reusable node list, linked through l
	prio  uint64 // splitmix64 state for new nodes' priorities
	spans int
}

type vfNode struct {
	start, end uint64
	max        uint64 // subtree_max_size: largest end-start in this subtree
	prio       uint64
	l, r       int32
	area       *VMArea // busy tree only
}

func newVmapTree(start, end uint64) *vmapTree {
	// an empty tree when start == end (the busy areas)
	f := &vmapTree{n: make([]vfNode, 1, 64)}
	if start < end {
		f.root = f.insert(f.root, f.node(start, end))
	}
	return f
}

// node takes a pool slot for [start, end).
func (f *vmapTree) node(start, end uint64) int32 {
	f.prio += 0x9e3779b97f4a7c15
	z := f.prio
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	x := f.spare
	if x != 0 {
		f.spare = f.n[x].l
	} else {
		f.n = append(f.n, vfNode{})
		x = int32(len(f.n) - 1)
	}
	f.n[x] = vfNode{start: start, end: end, max: end - start, prio: z}
	f.spans++
	return x
}

func (f *vmapTree) drop(x int32) {
	f.n[x] = vfNode{l: f.spare}
	f.spare = x
	f.spans--
}

// pull recomputes x's subtree_max_size from its span and children
// (compute_subtree_max_size).
func (f *vmapTree) pull(x int32) {
	nd := &f.n[x]
	m := nd.end - nd.start
	if nd.l != 0 {
		m = max(m, f.n[nd.l].max)
	}
	if nd.r != 0 {
		m = max(m, f.n[nd.r].max)
	}
	nd.max = m
}

// split cuts subtree t into the nodes starting below key and the rest.
func (f *vmapTree) split(t int32, key uint64) (int32, int32) {
	if t == 0 {
		return 0, 0
	}
	if f.n[t].start < key {
		l, r := f.split(f.n[t].r, key)
		f.n[t].r = l
		f.pull(t)
		return t, r
	}
	l, r := f.split(f.n[t].l, key)
	f.n[t].l = r
	f.pull(t)
	return l, t
}

// join concatenates two subtrees, every start in a below every start in b.
func (f *vmapTree) join(a, b int32) int32 {
	if a == 0 {
		return b
	}
	if b == 0 {
		return a
	}
	if f.n[a].prio > f.n[b].prio {
		f.n[a].r = f.join(f.n[a].r, b)
		f.pull(a)
		return a
	}
	f.n[b].l = f.join(a, f.n[b].l)
	f.pull(b)
	return b
}

func (f *vmapTree) insert(t, x int32) int32 {
	if t == 0 {
		return x
	}
	if f.n[x].prio > f.n[t].prio {
		f.n[x].l, f.n[x].r = f.split(t, f.n[x].start)
		f.pull(x)
		return x
	}
	if f.n[x].start < f.n[t].start {
		f.n[t].l = f.insert(f.n[t].l, x)
	} else {
		f.n[t].r = f.insert(f.n[t].r, x)
	}
	f.pull(t)
	return t
}

// erase unlinks the node starting at key and returns its slot to the pool.
func (f *vmapTree) erase(t int32, key uint64) int32 {
	if t == 0 {
		return 0
	}
	switch s := f.n[t].start; {
	case key < s:
		f.n[t].l = f.erase(f.n[t].l, key)
	case key > s:
		f.n[t].r = f.erase(f.n[t].r, key)
	default:
		j := f.join(f.n[t].l, f.n[t].r)
		f.drop(t)
		return j
	}
	f.pull(t)
	return t
}

// resize gives the node starting at key the span [start, end), which must
// keep its place in address order, and refreshes subtree_max_size on the
// path to it (augment_tree_propagate_from).
func (f *vmapTree) resize(t int32, key, start, end uint64) {
	if t == 0 {
		return
	}
	switch s := f.n[t].start; {
	case key < s:
		f.resize(f.n[t].l, key, start, end)
	case key > s:
		f.resize(f.n[t].r, key, start, end)
	default:
		f.n[t].start, f.n[t].end = start, end
	}
	f.pull(t)
}

// fitAt is is_within_this_va: the aligned start of size bytes in span x at or
// above vstart, if it fits (and does not wrap).
func (f *vmapTree) fitAt(x int32, size, align, vstart uint64) (uint64, bool) {
	nd := &f.n[x]
	a := max(nd.start, vstart)
	na := (a + align - 1) &^ (align - 1)
	if na < a || na+size < na {
		return 0, false
	}
	return na, na+size <= nd.end
}

// lowest is find_vmap_lowest_match without the alignment-adjusted search
// length: the lowest-address span where size bytes aligned to align fit at
// or above vstart. Subtrees whose largest span is below size are skipped,
// and so are left subtrees that lie wholly below vstart.
//
// For align > PAGE_SIZE, __alloc_vmap_area prunes with size+align-1
// (adjust_search_size) unless the window is exactly size long; the kernel
// may then pass over a lower free area that is smaller than that but still
// fits, and which one it finds depends on its rbtree's shape. The model
// keeps the exact lowest fit, which is what the kernel's own
// DEBUG_AUGMENT_LOWEST_MATCH_CHECK compares its search against.
func (f *vmapTree) lowest(t int32, size, align, vstart uint64) (int32, uint64) {
	for t != 0 && f.n[t].max >= size {
		nd := &f.n[t]
		if nd.start > vstart {
			if x, a := f.lowest(nd.l, size, align, vstart); x != 0 {
				return x, a
			}
		}
		if a, ok := f.fitAt(t, size, align, vstart); ok {
			return t, a
		}
		t = f.n[t].r
	}
	return 0, 0
}

// clip is va_clip: take [a, a+size) out of span x — the whole span, its left
// or right edge, or its middle (the span keeps the right remainder and a new
// node holds the left one, as the kernel's NE_FIT_TYPE does).
func (f *vmapTree) clip(x int32, a, size uint64) {
	s, e := f.n[x].start, f.n[x].end
	switch {
	case a == s && a+size == e:
		f.root = f.erase(f.root, s)
	case a == s:
		f.resize(f.root, s, a+size, e)
	case a+size == e:
		f.resize(f.root, s, s, a)
	default:
		f.resize(f.root, s, a+size, e)
		f.root = f.insert(f.root, f.node(s, a))
	}
}

// alloc is __alloc_vmap_area: the lowest-address fit of size bytes aligned
// to align inside [vstart, vend), clipped from the free space.
func (f *vmapTree) alloc(size, align, vstart, vend uint64) (uint64, bool) {
	x, a := f.lowest(f.root, size, align, vstart)
	if x == 0 || a+size > vend {
		return 0, false
	}
	f.clip(x, a, size)
	return a, true
}

// neighbours returns the span ending at or before s with the highest start
// and the first span starting at or after e (0 when there is none).
func (f *vmapTree) neighbours(s, e uint64) (prev, next int32) {
	for t := f.root; t != 0; {
		if f.n[t].start < s {
			prev, t = t, f.n[t].r
		} else {
			t = f.n[t].l
		}
	}
	for t := f.root; t != 0; {
		if f.n[t].start >= e {
			next, t = t, f.n[t].l
		} else {
			t = f.n[t].r
		}
	}
	return prev, next
}

// release is merge_or_add_vmap_area_augment: return [s, e) (which must be
// busy) to the free space, merged with the spans that touch it. When both
// touch, the next span is unlinked first and the previous one grows over
// both, as the kernel does.
func (f *vmapTree) release(s, e uint64) {
	p, n := f.neighbours(s, e)
	joinPrev := p != 0 && f.n[p].end == s
	joinNext := n != 0 && f.n[n].start == e
	switch {
	case joinPrev && joinNext:
		ps, ne := f.n[p].start, f.n[n].end
		f.root = f.erase(f.root, e)
		f.resize(f.root, ps, ps, ne)
	case joinPrev:
		f.resize(f.root, f.n[p].start, f.n[p].start, e)
	case joinNext:
		f.resize(f.root, e, s, f.n[n].end)
	default:
		f.root = f.insert(f.root, f.node(s, e))
	}
}

// carve takes [s, e) out of the free space wherever it is free (boot-time
// reservations such as the kernel image).
func (f *vmapTree) carve(s, e uint64) {
	for s < e {
		// the last span starting below e: the only one that can overlap
		// [s, e) at its top.
		var x int32
		for t := f.root; t != 0; {
			if f.n[t].start < e {
				x, t = t, f.n[t].r
			} else {
				t = f.n[t].l
			}
		}
		if x == 0 || f.n[x].end <= s {
			return
		}
		cs, ce := max(s, f.n[x].start), min(e, f.n[x].end)
		f.clip(x, cs, ce-cs)
		e = cs
	}
}

// each calls fn for every free span in address order.
func (f *vmapTree) each(fn func(start, end uint64)) { f.walk(f.root, fn) }

func (f *vmapTree) walk(t int32, fn func(start, end uint64)) {
	if t == 0 {
		return
	}
	f.walk(f.n[t].l, fn)
	fn(f.n[t].start, f.n[t].end)
	f.walk(f.n[t].r, fn)
}

// addArea is insert_vmap_area into vmap_area_root.
func (f *vmapTree) addArea(a *VMArea) {
	x := f.node(a.Addr, a.Addr+a.Size)
	f.n[x].area = a
	f.root = f.insert(f.root, x)
}

// removeArea unlinks the busy area starting at addr.
func (f *vmapTree) removeArea(addr uint64) { f.root = f.erase(f.root, addr) }

// areaAt is find_vmap_area: the busy area whose span holds addr.
func (f *vmapTree) areaAt(addr uint64) *VMArea {
	var x int32
	for t := f.root; t != 0; {
		if f.n[t].start <= addr {
			x, t = t, f.n[t].r
		} else {
			t = f.n[t].l
		}
	}
	if x == 0 || addr >= f.n[x].end {
		return nil
	}
	return f.n[x].area
}

// eachArea calls fn for every busy area in address order.
func (f *vmapTree) eachArea(fn func(a *VMArea)) { f.walkArea(f.root, fn) }

func (f *vmapTree) walkArea(t int32, fn func(a *VMArea)) {
	if t == 0 {
		return
	}
	f.walkArea(f.n[t].l, fn)
	fn(f.n[t].area)
	f.walkArea(f.n[t].r, fn)
}
