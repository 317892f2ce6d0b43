package workload

import (
	"fmt"
	"strings"

	"github.com/ptlab/ptlab/kernel"
)

// ScenarioModules resolves the scenario's module set against the embedded
// Debian arm64 dataset to loader specs in load order (dependencies first):
// "server" (the realistic server set), "all" (every module of the package),
// "none", or a comma-separated list of names, loaded in the order given,
// each after its dependencies.
func ScenarioModules(s *Scenario) ([]kernel.ModuleSpec, error) {
	var names []string
	var err error
	switch s.Work.Modules {
	case "none":
		return nil, nil
	case "server":
		names, err = ServerModuleSet()
	case "all":
		names, err = AllModulesInDependencyOrder()
	default:
		d, derr := DebianModules()
		if derr != nil {
			return nil, derr
		}
		var want []string
		for _, n := range strings.Split(s.Work.Modules, ",") {
			want = append(want, strings.TrimSpace(n))
		}
		lo := d.LoadOrderAsGiven(want, true)
		if len(lo.MissingRequested) > 0 {
			return nil, fmt.Errorf("%w: modules not in %s: %s", ErrScenario, d.Package, strings.Join(lo.MissingRequested, ", "))
		}
		names = lo.Order
	}
	if err != nil {
		return nil, err
	}
	return ModuleSpecs(names)
}

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
