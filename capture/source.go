package capture

import (
	"errors"
	"fmt"
)

// TableSource reads the live kernel's translation-table pages out of kcore by
// physical address, the way the kernel's own walkers reach them through
// __va(): first through a kcore segment that maps the PA directly (a
// linear-map RAM segment or the kernel image), else at its linear-map
// address __phys_to_virt(pa).
type TableSource struct {
	k        *Kcore
	m        *Machine
	pageSize uint64
	buf      []byte

	// TablesRead counts successful Table calls.
	TablesRead int
}

// NewTableSource returns a source for the machine's tables in k.
func NewTableSource(k *Kcore, m *Machine) *TableSource {
	ps := m.Geometry.PageSize()
	return &TableSource{k: k, m: m, pageSize: ps, buf: make([]byte, ps)}
}

// Table returns the descriptors from pa to the end of its page: a whole table
// for a page-aligned pa, the hardware's part of a wider top-level table for
// the root when TTBR1 carries an offset. Each call returns a new slice, which
// the caller owns (the walker keeps a parent table while it reads a child).
func (s *TableSource) Table(pa uint64) ([]uint64, error) {
	if pa&7 != 0 {
		return nil, fmt.Errorf("%w: table address %#x is not 8-byte aligned", ErrMachine, pa)
	}
	n := s.pageSize - pa&(s.pageSize-1)
	b := s.buf[:n]
	err := s.k.ReadPA(pa, b)
	if errors.Is(err, ErrNotMapped) {
		if err2 := s.k.ReadVA(s.m.PhysToVirt(pa), b); err2 != nil {
			return nil, fmt.Errorf("table at PA %#x: %w (and at its linear address: %w)", pa, err, err2)
		}
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("table at PA %#x: %w", pa, err)
	}
	t := make([]uint64, n/8)
	bo := s.k.ByteOrder
	for i := range t {
		t[i] = bo.Uint64(b[i*8:])
	}
	s.TablesRead++
	return t, nil
}
