package workload

import (
	"fmt"
	"strings"

	"github.com/ptlab/ptlab/kernel"
)

// ScenarioModules resolves the scenario's module set to loader specs in
// load order (dependencies first).
func ScenarioModules(s *Scenario) ([]kernel.ModuleSpec, error) {
	switch s.Work.Modules {
	case "none":
		return nil, nil
	}
	return nil, fmt.Errorf("%w: module set %q: %s", ErrScenario, s.Work.Modules, strings.TrimSpace("the module dataset is not available"))
}
