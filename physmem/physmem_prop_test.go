package physmem

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// refBuddy is a deliberately plain reference model of the kernel's buddy
// allocator for one zone and one migratetype: every RAM page has an entry,
// free lists are slices (index 0 is the head), nothing is lazy. The property
// test runs it in lockstep with Memory and demands identical addresses,
// errors and free-list order, which checks the lazy sections, the pristine
// boot part and the head/boot/tail list split against the plain algorithm.
type refBuddy struct {
	pageShift uint
	regions   []pfnRange
	pages     map[uint64]*refPage
	lists     [MaxOrder + 1][]uint64
	private   map[uint64]uint64
}

type refPage struct {
	head     bool
	order    int
	free     bool
	reserved bool
	owner    Owner
}

func newRef(m *Memory) *refBuddy {
	r := &refBuddy{pageShift: m.PageShift(), pages: map[uint64]*refPage{}, private: map[uint64]uint64{}}
	for _, reg := range m.Regions() {
		lo, hi := reg.Base>>r.pageShift, reg.End()>>r.pageShift
		r.regions = append(r.regions, pfnRange{lo, hi})
		for p := lo; p < hi; p++ {
			r.pages[p] = &refPage{}
		}
		// memblock_free_all: largest aligned block that fits, address
		// order, each added at the tail (FPI_TO_TAIL).
		for p := lo; p < hi; {
			k := MaxOrder
			for k > 0 && (p&(1<<k-1) != 0 || p+1<<k > hi) {
				k--
			}
			*r.pages[p] = refPage{head: true, order: k, free: true}
			r.lists[k] = append(r.lists[k], p)
			p += 1 << k
		}
	}
	return r
}

func (r *refBuddy) isFreeHead(p uint64, k int) bool {
	pg := r.pages[p]
	return pg != nil && pg.head && pg.free && pg.order == k
}

func (r *refBuddy) unlist(p uint64, k int) {
	i := slices.Index(r.lists[k], p)
	r.lists[k] = slices.Delete(r.lists[k], i, i+1)
	*r.pages[p] = refPage{}
}

func (r *refBuddy) listFront(p uint64, k int) {
	*r.pages[p] = refPage{head: true, order: k, free: true}
	r.lists[k] = slices.Insert(r.lists[k], 0, p)
}

func (r *refBuddy) listBack(p uint64, k int) {
	*r.pages[p] = refPage{head: true, order: k, free: true}
	r.lists[k] = append(r.lists[k], p)
}

func (r *refBuddy) alloc(order int, owner Owner) (uint64, bool) {
	for k := order; k <= MaxOrder; k++ {
		if len(r.lists[k]) == 0 {
			continue
		}
		p := r.lists[k][0]
		r.unlist(p, k)
		for k > order {
			k--
			r.listFront(p+1<<k, k)
		}
		*r.pages[p] = refPage{head: true, order: order, owner: owner}
		return p, true
	}
	return 0, false
}

func (r *refBuddy) clearPrivate(p uint64, k int) {
	for q := p; q < p+1<<k; q++ {
		delete(r.private, q)
	}
}

func (r *refBuddy) free(p uint64, k int) {
	r.clearPrivate(p, k)
	*r.pages[p] = refPage{}
	for k < MaxOrder {
		b := p ^ 1<<k
		if !r.isFreeHead(b, k) {
			break
		}
		r.unlist(b, k)
		p &= b
		k++
	}
	if k < MaxOrder-1 && r.isFreeHead((p&^(1<<k))^1<<(k+1), k+1) {
		r.listBack(p, k)
	} else {
		r.listFront(p, k)
	}
}

func (r *refBuddy) findBlock(p uint64) (uint64, *refPage) {
	for o := 0; o <= MaxOrder; o++ {
		h := p &^ (1<<o - 1)
		if pg := r.pages[h]; pg != nil && pg.head && pg.order >= o {
			return h, pg
		}
	}
	panic(fmt.Sprintf("ref: page %#x in no block", p))
}

func (r *refBuddy) inOneRegion(lo, hi uint64) bool {
	for _, rg := range r.regions {
		if lo >= rg.start && hi <= rg.end {
			return true
		}
	}
	return false
}

func (r *refBuddy) reserve(lo, hi uint64, owner Owner) error {
	if lo >= hi || !r.inOneRegion(lo, hi) {
		return ErrInvalid
	}
	for p := lo; p < hi; p++ {
		if _, pg := r.findBlock(p); !pg.free {
			return ErrBusy
		}
	}
	for p := lo; p < hi; {
		k := MaxOrder
		for k > 0 && (p&(1<<k-1) != 0 || p+1<<k > hi) {
			k--
		}
		r.takeOff(p, k, owner)
		p += 1 << k
	}
	return nil
}

// takeOff: take_page_off_buddy + break_down_buddy_pages for an aligned chunk.
func (r *refBuddy) takeOff(c uint64, co int, owner Owner) {
	h, pg := r.findBlock(c)
	k := pg.order
	if k < co {
		r.takeOff(c, co-1, owner)
		r.takeOff(c+1<<(co-1), co-1, owner)
		return
	}
	r.unlist(h, k)
	for k > co {
		k--
		if c >= h+1<<k {
			r.listFront(h, k)
			h += 1 << k
		} else {
			r.listFront(h+1<<k, k)
		}
	}
	*r.pages[c] = refPage{head: true, order: co, reserved: true, owner: owner}
}

func (r *refBuddy) unreserve(lo, hi uint64) error {
	if lo >= hi || !r.inOneRegion(lo, hi) {
		return ErrInvalid
	}
	for p := lo; p < hi; p++ {
		if _, pg := r.findBlock(p); !pg.reserved {
			return ErrNotAllocated
		}
	}
	// free_reserved_area: page by page, in address order.
	for p := lo; p < hi; p++ {
		h, pg := r.findBlock(p)
		for pg.order > 0 { // split the reserved block down to p
			pg.order--
			half := uint64(1) << pg.order
			hp := *pg
			*r.pages[h+half] = hp
			if p >= h+half {
				h += half
				pg = r.pages[h]
			}
		}
		r.free(p, 0)
	}
	return nil
}

func (r *refBuddy) freeArea() [MaxOrderLimit + 1]uint64 {
	var fa [MaxOrderLimit + 1]uint64
	for k := range r.lists {
		fa[k] = uint64(len(r.lists[k]))
	}
	return fa
}

func (r *refBuddy) counts() (free uint64, owned [NumOwners]uint64) {
	for p := range r.pages {
		_, pg := r.findBlock(p)
		if pg.free {
			free++
		} else {
			owned[pg.owner]++
		}
	}
	return free, owned
}

// freeList returns Memory's free list of the given order in list order:
// head part, boot part (from the cursor, skipping blocks that left it), tail
// part. It also checks that the boot part has nrBoot blocks.
func (m *Memory) freeList(o int) ([]uint64, error) {
	fa := &m.area[o]
	var out []uint64
	for p := fa.head.first; p != nilPfn; p = m.pageAt(p).next {
		out = append(out, p)
	}
	var nboot uint64
	for run, idx := fa.run, fa.runIdx; run < len(fa.runs); run, idx = run+1, 0 {
		for r := fa.runs[run]; idx < r.n; idx++ {
			p := r.pfn + idx<<o
			if s := m.sectionOf(p); s == nil || s.pages[p-s.base].flags&pgBoot != 0 {
				out = append(out, p)
				nboot++
			}
		}
	}
	if nboot != fa.nrBoot {
		return nil, fmt.Errorf("order %d: %d boot blocks after the cursor, nrBoot %d", o, nboot, fa.nrBoot)
	}
	for p := fa.tail.first; p != nilPfn; p = m.pageAt(p).next {
		out = append(out, p)
	}
	return out, nil
}

type propBlock struct {
	pfn   uint64
	order int
}

// TestPropBuddy drives random Alloc/Free/Reserve/Unreserve/SetPrivate
// sequences over random small RAM layouts, on two Memories and the reference
// model in lockstep, and checks after every step: Check passes; free + owned
// == total; counters, owners and private values match the model; FreeArea
// equals both the model and the brute-force canonical decomposition of the
// free pages; the free lists are in the model's exact order; no page is
// handed out twice. At the end everything is freed and the fresh state must
// come back.
func TestPropBuddy(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		shift := rapid.SampledFrom([]uint{12, 14, 16}).Draw(t, "pageShift")
		nreg := rapid.IntRange(1, 3).Draw(t, "regions")
		pfn := 0x40000000>>shift + rapid.Uint64Range(0, 3000).Draw(t, "firstPfn")
		var layout []Region
		for i := 0; i < nreg; i++ {
			size := rapid.Uint64Range(1, 2500).Draw(t, "pages")
			layout = append(layout, Region{pfn << shift, size << shift})
			pfn += size + rapid.Uint64Range(0, 1500).Draw(t, "gap")
			if rapid.IntRange(0, 4).Draw(t, "far") == 0 {
				pfn += 1 << (31 - shift) // next region in another section
			}
		}
		given := rapid.Permutation(layout).Draw(t, "order")
		m, err := New(shift, given)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		m2, _ := New(shift, given) // lockstep twin: determinism
		ref := newRef(m)
		fresh := m.FreeArea()
		ps := m.PageSize()
		var live []propBlock
		handed := map[uint64]bool{} // pages currently out (Alloc), independent of ref
		var reserved []uint64       // reserved pfns (model), sorted on use

		ramPfn := func(label string) uint64 {
			rg := ref.regions[rapid.IntRange(0, len(ref.regions)-1).Draw(t, label+"Region")]
			return rapid.Uint64Range(rg.start, rg.end-1).Draw(t, label)
		}
		anyPfn := func(label string) uint64 { // RAM, or just around it
			p := ramPfn(label)
			return p + rapid.Uint64Range(0, 8).Draw(t, label+"Off") - 4
		}
		same := func(what string, e1, e2 error) {
			if (e1 == nil) != (e2 == nil) || (e1 != nil && e1.Error() != e2.Error()) {
				t.Fatalf("%s: twins disagree: %v / %v", what, e1, e2)
			}
		}

		t.Repeat(map[string]func(*rapid.T){
			"alloc": func(t *rapid.T) {
				order := rapid.IntRange(0, MaxOrder).Draw(t, "order")
				owner := Owner(rapid.IntRange(1, int(NumOwners)-1).Draw(t, "owner"))
				avail := uint64(0)
				canon := canonicalFreeArea(m.Regions(), shift, func(p uint64) bool { _, pg := ref.findBlock(p); return pg.free })
				for k := order; k <= MaxOrder; k++ {
					avail += canon[k]
				}
				pa, err := m.Alloc(order, owner)
				pa2, err2 := m2.Alloc(order, owner)
				same("alloc", err, err2)
				want, ok := ref.alloc(order, owner)
				if !ok {
					if !errors.Is(err, ErrNoMem) || avail != 0 {
						t.Fatalf("Alloc(%d): %v, model has no block (canonical blocks >= order: %d)", order, err, avail)
					}
					return
				}
				if err != nil || pa != want<<shift || pa2 != pa {
					t.Fatalf("Alloc(%d) = %#x, %v (twin %#x); model %#x", order, pa, err, pa2, want<<shift)
				}
				for p := want; p < want+1<<order; p++ {
					if handed[p] {
						t.Fatalf("page %#x handed out twice", p<<shift)
					}
					handed[p] = true
				}
				live = append(live, propBlock{want, order})
			},
			"free": func(t *rapid.T) {
				if len(live) == 0 {
					t.Skip("nothing allocated")
				}
				i := rapid.IntRange(0, len(live)-1).Draw(t, "block")
				b := live[i]
				live = slices.Delete(live, i, i+1)
				err := m.Free(b.pfn<<shift, b.order)
				same("free", err, m2.Free(b.pfn<<shift, b.order))
				if err != nil {
					t.Fatalf("Free(%#x, %d): %v", b.pfn<<shift, b.order, err)
				}
				ref.free(b.pfn, b.order)
				for p := b.pfn; p < b.pfn+1<<b.order; p++ {
					delete(handed, p)
				}
			},
			"badFree": func(t *rapid.T) {
				p := anyPfn("pfn")
				pa := p<<shift + rapid.SampledFrom([]uint64{0, 0, 0, 8}).Draw(t, "byteOff")
				order := rapid.IntRange(-1, MaxOrder+1).Draw(t, "order")
				var want error
				pg := ref.pages[p]
				switch {
				case order < 0 || order > MaxOrder || pa&(ps<<order-1) != 0 || pg == nil:
					want = ErrInvalid
				case pg.head && !pg.free && !pg.reserved && pg.order == order:
					t.Skip("a valid free")
				default:
					want = ErrNotAllocated
				}
				err := m.Free(pa, order)
				same("badFree", err, m2.Free(pa, order))
				if !errors.Is(err, want) {
					t.Fatalf("Free(%#x, %d) = %v, want %v", pa, order, err, want)
				}
			},
			"reserve": func(t *rapid.T) {
				lo := ramPfn("start")
				n := rapid.Uint64Range(1, rapid.SampledFrom([]uint64{8, 64, 2048}).Draw(t, "maxLen")).Draw(t, "len")
				owner := Owner(rapid.IntRange(1, int(NumOwners)-1).Draw(t, "owner"))
				want := ref.reserve(lo, lo+n, owner)
				err := m.Reserve(lo<<shift, n<<shift, owner)
				same("reserve", err, m2.Reserve(lo<<shift, n<<shift, owner))
				if !errors.Is(err, want) {
					t.Fatalf("Reserve(%#x, %d pages) = %v, want %v", lo<<shift, n, err, want)
				}
				if err == nil {
					for p := lo; p < lo+n; p++ {
						reserved = append(reserved, p)
					}
				}
			},
			"unreserve": func(t *rapid.T) {
				var lo, n uint64
				if len(reserved) > 0 && rapid.Bool().Draw(t, "ofReserved") {
					lo = reserved[rapid.IntRange(0, len(reserved)-1).Draw(t, "first")]
					n = rapid.Uint64Range(1, 300).Draw(t, "len")
					for n > 1 && !slices.Contains(reserved, lo+n-1) {
						n /= 2 // make success likely
					}
				} else {
					lo = anyPfn("start")
					n = rapid.Uint64Range(1, 64).Draw(t, "len")
				}
				want := ref.unreserve(lo, lo+n)
				err := m.Unreserve(lo<<shift, n<<shift)
				same("unreserve", err, m2.Unreserve(lo<<shift, n<<shift))
				if !errors.Is(err, want) {
					t.Fatalf("Unreserve(%#x, %d pages) = %v, want %v", lo<<shift, n, err, want)
				}
				if err == nil {
					reserved = slices.DeleteFunc(reserved, func(p uint64) bool { return p >= lo && p < lo+n })
				}
			},
			"setPrivate": func(t *rapid.T) {
				p := anyPfn("pfn")
				v := rapid.Uint64().Draw(t, "value")
				err := m.SetPrivate(p<<shift, v)
				same("setPrivate", err, m2.SetPrivate(p<<shift, v))
				pg := ref.pages[p]
				switch {
				case pg == nil:
					if !errors.Is(err, ErrInvalid) {
						t.Fatalf("SetPrivate outside RAM: %v", err)
					}
				case func() bool { _, b := ref.findBlock(p); return b.free }():
					if !errors.Is(err, ErrNotAllocated) {
						t.Fatalf("SetPrivate on a free page: %v", err)
					}
				default:
					if err != nil {
						t.Fatalf("SetPrivate(%#x): %v", p<<shift, err)
					}
					if v != 0 {
						ref.private[p] = v
					} else {
						delete(ref.private, p)
					}
				}
			},
			"": func(t *rapid.T) {
				compare(t, m, ref, 256)
			},
		})

		// Free everything: the fresh state must come back.
		for _, b := range live {
			if err := m.Free(b.pfn<<shift, b.order); err != nil {
				t.Fatalf("final Free: %v", err)
			}
			ref.free(b.pfn, b.order)
		}
		slices.Sort(reserved)
		for i := 0; i < len(reserved); {
			j := i + 1
			for j < len(reserved) && reserved[j] == reserved[j-1]+1 && ref.inOneRegion(reserved[i], reserved[j]+1) {
				j++
			}
			if err := m.Unreserve(reserved[i]<<shift, uint64(j-i)<<shift); err != nil {
				t.Fatalf("final Unreserve: %v", err)
			}
			if err := ref.unreserve(reserved[i], reserved[j-1]+1); err != nil {
				t.Fatalf("ref final unreserve: %v", err)
			}
			i = j
		}
		compare(t, m, ref, -1)
		if m.FreeArea() != fresh || m.FreePages() != m.TotalPages() {
			t.Fatalf("after freeing everything FreeArea %v free %d, fresh %v total %d",
				m.FreeArea(), m.FreePages(), fresh, m.TotalPages())
		}
	})
}

// compare checks Memory against the reference model. sample < 0 compares
// every page's owner and private value, otherwise that many pages.
func compare(t *rapid.T, m *Memory, ref *refBuddy, sample int) {
	if err := m.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	shift := m.PageShift()
	free, owned := ref.counts()
	var sum uint64
	for o := OwnerFree + 1; o < NumOwners; o++ {
		if m.OwnedPages(o) != owned[o] {
			t.Fatalf("OwnedPages(%v) = %d, model %d", o, m.OwnedPages(o), owned[o])
		}
		sum += m.OwnedPages(o)
	}
	if m.FreePages() != free || m.OwnedPages(OwnerFree) != free || m.FreePages()+sum != m.TotalPages() {
		t.Fatalf("FreePages %d, model %d, owned %d, total %d", m.FreePages(), free, sum, m.TotalPages())
	}
	fa := m.FreeArea()
	if fa != ref.freeArea() {
		t.Fatalf("FreeArea %v, model %v", fa, ref.freeArea())
	}
	canon := canonicalFreeArea(m.Regions(), shift, func(p uint64) bool { _, pg := ref.findBlock(p); return pg.free })
	if fa != canon {
		t.Fatalf("FreeArea %v, canonical decomposition of the free pages %v", fa, canon)
	}
	largest := -1
	for k := MaxOrder; k >= 0; k-- {
		if fa[k] > 0 {
			largest = k
			break
		}
	}
	if m.LargestFreeOrder() != largest {
		t.Fatalf("LargestFreeOrder %d, want %d", m.LargestFreeOrder(), largest)
	}
	for k := 0; k <= MaxOrder; k++ {
		got, err := m.freeList(k)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, ref.lists[k]) {
			t.Fatalf("order %d free list %x, model %x", k, got, ref.lists[k])
		}
	}
	pfns := make([]uint64, 0, len(ref.pages))
	for p := range ref.pages {
		pfns = append(pfns, p)
	}
	slices.Sort(pfns)
	if sample >= 0 && len(pfns) > sample {
		step := len(pfns) / sample
		var picked []uint64
		for i := 0; i < len(pfns); i += step {
			picked = append(picked, pfns[i])
		}
		for p := range ref.private {
			picked = append(picked, p)
		}
		pfns = picked
	}
	for _, p := range pfns {
		_, pg := ref.findBlock(p)
		want := OwnerFree
		if !pg.free {
			want = pg.owner
		}
		if got := m.Owner(p << shift); got != want {
			t.Fatalf("Owner(%#x) = %v, model %v", p<<shift, got, want)
		}
		if got := m.Private(p << shift); got != ref.private[p] {
			t.Fatalf("Private(%#x) = %d, model %d", p<<shift, got, ref.private[p])
		}
	}
}
