package physmem

import (
	"errors"
	"testing"
)

// MAX_PAGE_ORDER per granule: a PMD-sized block is one buddy block with 16K
// (order 11 = 32M) and 64K (order 13 = 512M) pages, and nothing larger is.
func TestMaxOrderPerGranule(t *testing.T) {
	for _, g := range []struct {
		shift uint
		order int
	}{{12, 10}, {14, 11}, {16, 13}} {
		if got := MaxOrderFor(g.shift); got != g.order {
			t.Fatalf("MaxOrderFor(%d) = %d, want %d", g.shift, got, g.order)
		}
		m, err := NewMaxOrder(g.shift, []Region{{0x80000000, 4 << 30}}, MaxOrderFor(g.shift))
		if err != nil {
			t.Fatal(err)
		}
		if fa := m.FreeArea(); fa[g.order] == 0 || m.LargestFreeOrder() != g.order {
			t.Errorf("shift %d: free area %v, largest order %d", g.shift, fa, m.LargestFreeOrder())
		}
		pa, err := m.Alloc(g.order, OwnerVmalloc)
		if err != nil {
			t.Fatalf("shift %d: order-%d alloc: %v", g.shift, g.order, err)
		}
		if pa&(uint64(1)<<(g.shift+uint(g.order))-1) != 0 {
			t.Errorf("shift %d: block %#x not naturally aligned", g.shift, pa)
		}
		if _, err := m.Alloc(g.order+1, OwnerVmalloc); !errors.Is(err, ErrInvalid) {
			t.Errorf("shift %d: order %d must be out of range: %v", g.shift, g.order+1, err)
		}
		// Split a block down to a page and free everything: it merges back.
		p0, err := m.Alloc(0, OwnerVmalloc)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Free(p0, 0); err != nil {
			t.Fatal(err)
		}
		if err := m.Free(pa, g.order); err != nil {
			t.Fatal(err)
		}
		if err := m.Check(); err != nil {
			t.Fatal(err)
		}
		if m.FreePages() != m.TotalPages() || m.LargestFreeOrder() != g.order {
			t.Errorf("shift %d: after freeing: free %d of %d, largest %d", g.shift, m.FreePages(), m.TotalPages(), m.LargestFreeOrder())
		}
	}
	if _, err := NewMaxOrder(16, []Region{{0, 1 << 30}}, 14); !errors.Is(err, ErrInvalid) {
		t.Errorf("order 14 exceeds a 64K section: %v", err)
	}
}
