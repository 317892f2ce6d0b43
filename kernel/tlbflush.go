package kernel

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// TLBIKind is the TLB invalidation instruction the kernel issues.
type TLBIKind uint8

const (
	// TLBIVAALE1IS invalidates one page, last level, all ASIDs
	// (flush_tlb_kernel_range without range operations).
	TLBIVAALE1IS TLBIKind = iota
	// TLBIRVAALE1IS invalidates a range (FEAT_TLBIRANGE).
	TLBIRVAALE1IS
	// TLBIVMALLE1IS invalidates everything (flush_tlb_all).
	TLBIVMALLE1IS
	// TLBIVAAE1IS invalidates one VA at all levels, walk caches included
	// (__flush_tlb_kernel_pgtable, before a table page is freed).
	TLBIVAAE1IS
	// NumTLBIKinds is the number of kinds.
	NumTLBIKinds
	numTLBIKinds = NumTLBIKinds
)

var tlbiNames = [numTLBIKinds]string{"vaale1is", "rvaale1is", "vmalle1is", "vaae1is"}

func (k TLBIKind) String() string {
	if k < numTLBIKinds {
		return tlbiNames[k]
	}
	return fmt.Sprintf("tlbi(%d)", uint8(k))
}

// TLBICounts holds one count per TLBI kind, indexed by the kind. Its JSON
// form is an object keyed by the instruction's name ("vaale1is": n, ...).
type TLBICounts [NumTLBIKinds]uint64

// MarshalJSON writes the counts keyed by instruction name.
func (c TLBICounts) MarshalJSON() ([]byte, error) {
	m := make(map[string]uint64, NumTLBIKinds)
	for k := TLBIKind(0); k < NumTLBIKinds; k++ {
		m[k.String()] = c[k]
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes; unknown names are an error.
func (c *TLBICounts) UnmarshalJSON(b []byte) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*c = TLBICounts{}
	for name, n := range m {
		k := slices.Index(tlbiNames[:], name)
		if k < 0 {
			return fmt.Errorf("unknown TLBI kind %q", name)
		}
		c[k] = n
	}
	return nil
}

// TLBIOp is one invalidation broadcast: a kind, the VA range it covers
// ([Start, End); everything for VMALLE1IS) and the number of TLBI
// instructions it took.
type TLBIOp struct {
	Kind       TLBIKind
	Start, End uint64
	Insns      int
}

// TLBLog records the TLB maintenance the model issues: counts always, every
// operation when Record is set (tests, traces).
type TLBLog struct {
	mu     sync.Mutex
	Record bool
	Ops    []TLBIOp
	Count  TLBICounts // broadcasts
	Insns  TLBICounts // instructions
}

func (l *TLBLog) add(op TLBIOp) {
	l.mu.Lock()
	l.Count[op.Kind]++
	l.Insns[op.Kind] += uint64(op.Insns)
	if l.Record {
		l.Ops = append(l.Ops, op)
	}
	l.mu.Unlock()
}

// Reset clears the log.
func (l *TLBLog) Reset() {
	l.mu.Lock()
	l.Ops = l.Ops[:0]
	l.Count = TLBICounts{}
	l.Insns = TLBICounts{}
	l.mu.Unlock()
}

// Total is the number of broadcasts of every kind.
func (l *TLBLog) Total() uint64 {
	var n uint64
	for _, c := range l.Count {
		n += c
	}
	return n
}

func (k *Kernel) tlbi(c CPU, op TLBIOp) {
	k.TLB.add(op)
	c.TLBI(op)
}

// maxTLBIRangePages is MAX_TLBI_RANGE_PAGES = __TLBI_RANGE_PAGES(31, 3).
const maxTLBIRangePages = 32 << 16

// FlushTLBAll is flush_tlb_all: TLBI VMALLE1IS.
func (k *Kernel) FlushTLBAll(c CPU) {
	k.tlbi(c, TLBIOp{Kind: TLBIVMALLE1IS, Start: 0, End: 0, Insns: 1})
}

// FlushTLBKernelRange is flush_tlb_kernel_range: the range rounded to pages;
// everything (flush_tlb_all) when the range is too large for per-page or
// range operations (more than MAX_TLBI_RANGE_PAGES with FEAT_TLBIRANGE, at
// least MAX_DVM_OPS = PTRS_PER_PTE pages without); otherwise last-level
// invalidation by VA, page by page or in range operations
// (__flush_tlb_range_op).
func (k *Kernel) FlushTLBKernelRange(c CPU, start, end uint64) {
	if k.Mutations.SkipTLBI {
		return
	}
	ps := k.G.PageSize()
	start &^= ps - 1
	end = (end + ps - 1) &^ (ps - 1)
	if end <= start {
		return
	}
	pages := (end - start) / ps
	rangeOps := k.Cfg.TLBIRange
	if (rangeOps && pages > maxTLBIRangePages) || (!rangeOps && pages >= uint64(k.G.EntriesPerPage())) {
		k.FlushTLBAll(c)
		return
	}
	if !rangeOps {
		k.tlbi(c, TLBIOp{Kind: TLBIVAALE1IS, Start: start, End: end, Insns: int(pages)})
		return
	}
	k.tlbi(c, TLBIOp{Kind: TLBIRVAALE1IS, Start: start, End: end, Insns: k.tlbiRangeInsns(start, pages)})
}

// tlbiRangeInsns counts the instructions __flush_tlb_range_op issues for
// pages pages from start: single-page TLBIs for an odd page and (under LPA2)
// a start not 64K aligned, range TLBIs of (num+1) << (5*scale+1) pages for
// scale 3 down to 0.
func (k *Kernel) tlbiRangeInsns(start, pages uint64) int {
	n := 0
	ps := k.G.PageSize()
	scale := 3
	for pages > 0 {
		if pages == 1 || (k.G.LPA2 && start&(64<<10-1) != 0) {
			n++
			start += ps
			pages--
			continue
		}
		if scale < 0 {
			break
		}
		maxPages := uint64(32) << (5*uint(scale) + 1)
		num := int64(min(pages, maxPages)>>(5*uint(scale)+1)) - 1
		if num >= 0 {
			covered := uint64(num+1) << (5*uint(scale) + 1)
			n++
			start += covered * ps
			pages -= covered
		}
		scale--
	}
	return n
}

// flushTLBKernelPgtable is __flush_tlb_kernel_pgtable: TLBI VAAE1IS for one
// VA, which also drops walk-cache entries, issued before a table page that
// mapped addr is freed.
func (k *Kernel) flushTLBKernelPgtable(c CPU, addr uint64) {
	k.tlbi(c, TLBIOp{Kind: TLBIVAAE1IS, Start: addr, End: addr + k.G.PageSize(), Insns: 1})
}
