package pgtable

import (
	"fmt"
	"unsafe"

	"github.com/ptlab/ptlab/arm64"
)

// The one walker. Every operation descends the tree the same way: the index
// of va at a level, a load of that descriptor through the door, and for a
// table descriptor the table page behind it (ErrNotTable when there is
// none). descend is that rule, looping over levels; step is descend over
// one level. walkRange applies step over a range of addresses and hands
// what it reaches to a visitor, after gVisor's pkg/ring0/pagetables
// iterateRange. Lookup, Translate and Unmap's check walk use descend
// through walkTo; Map follows existing tables with descend and keeps its
// own per-level loop for creating them, because creating a mapping decides
// per entry between a block, a contiguous run and a (possibly new) table
// (alloc_init_*), but reads, writes and resolves tables through the same
// walker (load, store, table, descPA). For the Direct door a table comes
// from the table shadow when its entry is valid (shadow.go): descend's
// call-free loop descendShadow, the walk cache's page-table-level miss
// (cachedViaShadow) and the lean entry of Direct{} without the walk cache
// (lean.go) apply the same rule through the same test (shadowEntry.valid).
//
// Hot paths build walker, cursor and visitor values field by field: a
// struct literal is assembled aside and copied with wide moves that read
// the narrow stores just made, a store-forwarding stall per call (it
// doubled the cost of a one-page Unmap).
//
// The visitors are a closed set dispatched by a switch (visitor), not a
// type parameter: Go instantiates generic code per GC shape and calls a
// type parameter's methods through a dictionary, so such calls are neither
// inlined nor devirtualised and their arguments escape to the heap (two
// allocations per Protect call when this was generic).

// descPA is the physical address of entry idx of the table page at tpa.
func descPA(tpa uint64, idx int) uint64 { return tpa + uint64(idx)*8 }

// walker is one operation's view of the tree through a door. For the plain
// Direct door loads and stores are plain memory accesses (no interface
// call): the devirtualised path of single-threaded runs.
type walker struct {
	t      *Tables
	g      *arm64.Geometry
	d      Door
	direct bool
	// The index leaf of the last table resolved: the tables of one walk
	// mostly share a section, so resolving the next costs one load.
	leaf   *indexLeaf
	leafHi uint64
	// remember: fill the walk cache on the way down (Lookup through a
	// cacheable door).
	remember bool
	// Copies of t's page shift, first PFN and entries per table, so that
	// resolving a table loads nothing through t.
	shift uint
	base  uint64
	epp   int
}

// table returns the descriptors of the table page at pa (Tables.lookup
// with the walker's index leaf remembered). The leaf is never nil: a
// walker starts at the root's. Small enough to inline into step.
func (w *walker) table(pa uint64) ([]uint64, bool) {
	rel := pa>>w.shift - w.base
	if rel>>indexShift == w.leafHi {
		if p := w.leaf[rel&(1<<indexShift-1)].desc.Load(); p != nil {
			return unsafe.Slice(p, w.epp), true
		}
	}
	return w.tableLeaf(rel)
}

// tableLeaf is table for a PFN outside the remembered index leaf.
func (w *walker) tableLeaf(rel uint64) ([]uint64, bool) {
	hi := rel >> indexShift
	if hi >= uint64(len(w.t.index)) {
		return nil, false
	}
	leaf := w.t.index[hi].Load()
	if leaf == nil {
		return nil, false
	}
	w.leaf, w.leafHi = leaf, hi
	return w.t.tableAt(leaf, rel)
}

// init points w at t through door d, field by field (see above).
func (w *walker) init(t *Tables, d Door) {
	_, direct := d.(Direct)
	w.t, w.g, w.d, w.direct, w.remember = t, &t.g, d, direct, false
	// Start from the root's index leaf: tables are often in its section.
	w.leaf, w.leafHi = t.rootLeaf, t.rootHi
	w.shift, w.base, w.epp = t.g.PageShift, t.basePFN, t.epp
}

// load and store stay small enough to inline; the door call is out of line.
func (w *walker) load(tpa uint64, tbl []uint64, idx int) uint64 {
	if w.direct {
		return tbl[idx]
	}
	return w.doorLoad(tpa, tbl, idx)
}

func (w *walker) store(tpa uint64, tbl []uint64, idx int, v uint64) {
	if w.direct {
		tbl[idx] = v
		return
	}
	w.doorStore(tpa, tbl, idx, v)
}

//go:noinline
func (w *walker) doorLoad(tpa uint64, tbl []uint64, idx int) uint64 {
	return w.d.Load(descPA(tpa, idx), &tbl[idx])
}

//go:noinline
func (w *walker) doorStore(tpa uint64, tbl []uint64, idx int, v uint64) {
	w.d.Store(descPA(tpa, idx), &tbl[idx], v)
}

// cursor is where a walk stands: the level-l table (tpa, tbl), with bits
// the table descriptors above it ORed, and the entry idx/desc it read there.
// sh is the table's shadow when the walker is direct and knows it (nil
// otherwise: the walk then resolves tables through the index only); csh is
// the shadow of the table descend stopped at, if it returned one.
type cursor struct {
	tpa  uint64
	tbl  []uint64
	l    arm64.Level
	bits uint64
	idx  int
	desc uint64
	sh   *shadowEntry
	csh  *shadowEntry
}

// descend is the walk rule. From c it reads the entry for va; while that is
// a table descriptor below level stop it moves c into the table behind it
// and reads again (remembering each table in the walk cache when
// w.remember is set). It returns with c at an entry that is not a table
// (ctbl nil), or at a level-stop table descriptor and the table behind it.
// One loop instead of a call per level: the Go compiler inlines neither a
// per-level step nor a generic visitor's methods. The loop keeps the
// cursor in registers and writes it back once.
//
// The table behind a descriptor comes from the current table's shadow
// entry when it is valid (shadow.go), else from the index (table), which
// then refills the entry. For the Direct door the levels whose shadow
// entries are valid go through descendShadow first, the same rule in a loop
// without calls (Go spills every live value around a call in a loop, which
// doubled the instructions per level); the loop here takes over at the
// first entry the shadow cannot serve.
func (w *walker) descend(c *cursor, va uint64, stop arm64.Level) (ctpa uint64, ctbl []uint64, err error) {
	if !w.direct {
		c.sh = nil // shadows are the Direct door's alone
	} else if c.sh != nil {
		if ctpa, ctbl, done := w.descendShadow(c, va, stop); done {
			return ctpa, ctbl, nil
		}
	}
	g := w.g
	tpa, tbl, l, bits, sh := c.tpa, c.tbl, c.l, c.bits, c.sh
	sgen := w.t.sgen.Load()
	var idx int
	var desc uint64
	var csh *shadowEntry
	for {
		idx = g.Index(va, l)
		desc = w.load(tpa, tbl, idx)
		if !g.IsTable(desc, l) {
			ctpa, ctbl = 0, nil
			break
		}
		ctpa = g.OutputAddress(desc)
		var se *shadowEntry
		hit := false
		if sh != nil {
			se = sh.at(idx)
			hit = sh.valid(idx, desc, sgen) != nil
		}
		if hit {
			ctbl, csh = unsafe.Slice(se.tbl, w.epp), se.sh
		} else {
			var ok bool
			if ctbl, ok = w.table(ctpa); !ok {
				err = w.notTable(ctpa, l, descPA(tpa, idx), va)
				break
			}
			csh = nil
			if se != nil {
				csh = w.fillShadow(se, desc, ctpa, l+1)
			}
		}
		if l >= stop {
			break
		}
		bits |= desc
		tpa, tbl, l, sh = ctpa, ctbl, l+1, csh
		if w.remember {
			w.t.rememberAt(va, l, tpa, tbl, bits, sh)
		}
	}
	if l != c.l { // moved (a one-level step does not)
		c.tpa, c.tbl, c.l, c.bits, c.sh = tpa, tbl, l, bits, sh
	}
	c.idx, c.desc, c.csh = idx, desc, csh
	return ctpa, ctbl, err
}

// descendShadow is descend for the Direct door while the shadow serves:
// done=false leaves c at the table whose entry it could not resolve (no
// shadow, or a stale entry), for descend to go on from there. The table is
// held as a pointer to its first descriptor (a slice costs a length check
// per index and a length and capacity per move); an index never exceeds
// the table's entries (Geometry.Index masks it).
func (w *walker) descendShadow(c *cursor, va uint64, stop arm64.Level) (ctpa uint64, ctbl []uint64, done bool) {
	g := w.g
	tpa, tp, l, bits, sh := c.tpa, &c.tbl[0], c.l, c.bits, c.sh
	sgen := w.t.sgen.Load()
	var idx int
	var desc uint64
	for {
		idx = int(va>>(g.Shift(l)&63)) & (g.Entries(l) - 1)
		desc = *(*uint64)(unsafe.Add(unsafe.Pointer(tp), idx*8))
		if !g.IsTable(desc, l) {
			done = true
			break
		}
		if sh == nil {
			break
		}
		se := sh.valid(idx, desc, sgen)
		if se == nil {
			break
		}
		if l >= stop {
			ctpa, ctbl, done = se.pa, unsafe.Slice(se.tbl, w.epp), true
			c.csh = se.sh
			break
		}
		bits |= desc
		tpa, tp, l, sh = se.pa, se.tbl, l+1, se.sh
		if w.remember {
			w.t.rememberAt(va, l, tpa, unsafe.Slice(tp, w.epp), bits, sh)
		}
	}
	if l != c.l { // moved: the one-level walks of a cached start do not
		c.tpa, c.tbl, c.l, c.bits, c.sh = tpa, unsafe.Slice(tp, w.epp), l, bits, sh
	}
	c.idx, c.desc = idx, desc
	return ctpa, ctbl, done
}

// step reads the level-l entry for va in the table at tpa (descend over
// one level). When it is a table descriptor, ctpa/ctbl are the next-level
// table and csh its shadow; ctbl is nil for a leaf or an empty slot. sh is
// the shadow of the table at tpa, or nil.
func (w *walker) step(tpa uint64, tbl []uint64, sh *shadowEntry, l arm64.Level, va uint64) (idx int, desc, ctpa uint64, ctbl []uint64, csh *shadowEntry, err error) {
	if w.direct {
		// A leaf or an empty slot (most entries a range walk visits above
		// the last level) needs no walk; nobody observes a second load.
		idx = w.g.Index(va, l)
		if desc = tbl[idx]; !w.g.IsTable(desc, l) {
			return idx, desc, 0, nil, nil, nil
		}
	}
	var c cursor
	c.tpa, c.tbl, c.l, c.sh = tpa, tbl, l, sh
	ctpa, ctbl, err = w.descend(&c, va, l)
	return c.idx, c.desc, ctpa, ctbl, c.csh, err
}

// notTable is the error of a table descriptor at dpa whose output address
// ctpa holds no table page.
func (w *walker) notTable(ctpa uint64, l arm64.Level, dpa, va uint64) error {
	return fmt.Errorf("%w: %#x under %s at %#x (va %#x)", ErrNotTable, ctpa, w.g.Name(l), dpa, va)
}

// visitOp names the range operations.
type visitOp uint8

const (
	opUnmap visitOp = iota
	opProtect
	opVisit
	opCensus
)

// visitor is what a range walk does where it arrives. Each operation's
// visitor has three methods:
//
//	table(l, va, end): on entering the level-l table that serves [va, end);
//	entry(w, tpa, tbl, idx, desc, l, va, next, bits): for an entry above the
//	  last level that is not a table (a leaf or an empty slot) covering
//	  [va, next) of its slot; bits are the table descriptors above, ORed;
//	ptes(w, tpa, tbl, i, j, va, bits): once per last-level table, with its
//	  entries [i, j) serving the range from va's page on.
type visitor struct {
	op      visitOp
	unmap   unmapVisitor
	protect protectVisitor
	visit   visitVisitor
	census  censusVisitor
}

func (v *visitor) table(l arm64.Level, va, end uint64) {
	if v.op == opCensus {
		v.census.table(l, va, end)
	}
}

func (v *visitor) entry(w *walker, tpa uint64, tbl []uint64, idx int, desc uint64, l arm64.Level, va, next, bits uint64) error {
	switch v.op {
	case opUnmap:
		return v.unmap.entry(w, tpa, tbl, idx, desc, l, va, next, bits)
	case opProtect:
		return v.protect.entry(w, tpa, tbl, idx, desc, l, va, next, bits)
	case opVisit:
		return v.visit.entry(w, tpa, tbl, idx, desc, l, va, next, bits)
	default:
		return v.census.entry(w, tpa, tbl, idx, desc, l, va, next, bits)
	}
}

func (v *visitor) ptes(w *walker, tpa uint64, tbl []uint64, i, j int, va, bits uint64) error {
	switch v.op {
	case opUnmap:
		return v.unmap.ptes(w, tpa, tbl, i, j, va, bits)
	case opProtect:
		return v.protect.ptes(w, tpa, tbl, i, j, va, bits)
	case opVisit:
		return v.visit.ptes(w, tpa, tbl, i, j, va, bits)
	default:
		return v.census.ptes(w, tpa, tbl, i, j, va, bits)
	}
}

// pteSpan is the entries [i, j) of the PTE table tbl that serve [va, end).
func (w *walker) pteSpan(tbl []uint64, va, end uint64) (i, j int) {
	i = w.g.Index(va, arm64.LastLevel)
	return i, i + min(int((end-va-1)>>w.g.PageShift)+1, len(tbl)-i)
}

// walkRange walks [va, end) below the level-l table at tpa.
func walkRange(w *walker, v *visitor, tpa uint64, tbl []uint64, sh *shadowEntry, l arm64.Level, va, end, bits uint64) error {
level:
	for {
		v.table(l, va, end)
		if l == arm64.LastLevel {
			i, j := w.pteSpan(tbl, va, end)
			return v.ptes(w, tpa, tbl, i, j, va, bits)
		}
		for {
			next := w.t.boundary(va, end, l)
			idx, desc, ctpa, ctbl, csh, err := w.step(tpa, tbl, sh, l, va)
			switch {
			case err != nil:
				return err
			case ctbl != nil && next == end:
				// The rest of the range lies below this entry: descend
				// without recursion (the common case of a few pages).
				tpa, tbl, sh, l, bits = ctpa, ctbl, csh, l+1, bits|desc
				if w.remember {
					// The table serving the whole rest of the range: the
					// next operation nearby starts here (walkCached).
					w.t.rememberAt(va, l, tpa, tbl, bits, sh)
				}
				continue level
			case ctbl != nil:
				err = walkRange(w, v, ctpa, ctbl, csh, l+1, va, next, bits|desc)
			default:
				err = v.entry(w, tpa, tbl, idx, desc, l, va, next, bits)
			}
			if err != nil {
				return err
			}
			if next == end {
				return nil
			}
			va = next
		}
	}
}

// walkCached walks [start, end) from the deepest table of the walk cache
// that holds the whole range, or from the root: for visitors that do not
// count tables (unmap, protect), and only for doors that may use the cache.
//
// The walk remembers the tables it enters that serve the rest of the range,
// so that the next operation nearby starts there.
func walkCached(t *Tables, d Door, v *visitor, start, end uint64) error {
	if cacheable(d) && (start < end || end == 0) {
		var w walker
		w.init(t, d)
		w.remember = true
		oneSpan := start^(end-1) < t.g.Size(arm64.LastLevel-1)
		if oneSpan {
			tpa, tbl, bits, ok := t.cached(start, arm64.LastLevel)
			if !ok && w.direct {
				tpa, tbl, bits, ok = t.cachedViaShadow(start)
			}
			if ok {
				return walkRange(&w, v, tpa, tbl, nil, arm64.LastLevel, start, end, bits)
			}
		}
		var c cursor
		if !t.deepestFor(start, end, &c) {
			c.tpa, c.tbl, c.sh, c.l, c.bits = t.root, t.rootTbl, t.rootSh, t.g.StartLevel, 0
		}
		if w.direct && c.l < arm64.LastLevel && oneSpan {
			// The range lies in one page table's span: walk to that table
			// at once (the loads are nobody's to observe, so where the walk
			// ends above it, at a block or an empty slot, the range walk
			// below starts there and reads that entry again).
			ctpa, ctbl, err := w.descend(&c, start, arm64.LastLevel-1)
			if err != nil {
				return err
			}
			if ctbl != nil {
				bits := c.bits | c.desc
				t.rememberAt(start, arm64.LastLevel, ctpa, ctbl, bits, nil)
				return walkRange(&w, v, ctpa, ctbl, nil, arm64.LastLevel, start, end, bits)
			}
		}
		return walkRange(&w, v, c.tpa, c.tbl, c.sh, c.l, start, end, c.bits)
	}
	return walkRoot(t, d, v, start, end)
}

// walkRoot walks [start, end) from the root.
func walkRoot(t *Tables, d Door, v *visitor, start, end uint64) error {
	if start >= end && end != 0 {
		return fmt.Errorf("%w: empty range [%#x, %#x)", ErrInvalid, start, end)
	}
	var w walker
	w.init(t, d)
	return walkRange(&w, v, t.root, t.rootTbl, t.rootSh, t.g.StartLevel, start, end, 0)
}
