package workload

import "testing"

// --modules a,b,c loads a, b and c in that order (each after its own
// dependencies), not in name order.
func TestScenarioModulesKeepGivenOrder(t *testing.T) {
	order := func(list string) []string {
		specs, err := ScenarioModules(&Scenario{Work: Workload{Modules: list}})
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, s := range specs {
			n = append(n, s.Name)
		}
		return n
	}
	a, b := order("xfs,minix"), order("minix,xfs")
	if len(a) == 0 || a[len(a)-1] != "minix" || b[0] != "minix" || b[len(b)-1] != "xfs" {
		t.Errorf("xfs,minix loads %v; minix,xfs loads %v", a, b)
	}
}
