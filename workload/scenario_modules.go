package workload

import (
	"fmt"
	"strings"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/modscan"
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
		names, err = modscan.ServerModuleSet()
	case "all":
		names, err = modscan.AllModulesInDependencyOrder()
	default:
		d, derr := modscan.DebianModules()
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
	return modscan.ModuleSpecs(names)
}
