package modscan

import (
	"fmt"

	"github.com/ptlab/ptlab/kernel"
)

// ModuleSpecs turns module names of the Debian dataset into loader specs:
// the page-aligned size of every module memory region (layout_sections).
func ModuleSpecs(names []string) ([]kernel.ModuleSpec, error) {
	d, err := DebianModules()
	if err != nil {
		return nil, err
	}
	specs := make([]kernel.ModuleSpec, 0, len(names))
	for _, n := range names {
		m, ok := d.Lookup(n)
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrUnknownModule, n)
		}
		spec := kernel.ModuleSpec{Name: m.Name}
		sizes := m.AllocSizes(4096)
		for t := range sizes {
			spec.Size[t] = sizes[t]
		}
		specs = append(specs, spec)
	}
	return specs, nil
}
