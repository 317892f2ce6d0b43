package check

import (
	"errors"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/pgtable"
)

// Final finds executable text with a writable linear alias whether or not
// the text lies in a tracked region: through the tracked regions' strict
// W^X pass, and through the pass over all execmem memory for the rest
// (which skips the tracked pages, already checked).
func TestFinalWXTrackedAndUntracked(t *testing.T) {
	for _, tracked := range []bool{true, false} {
		k := bootSmall(t, "bbml2-server", "rox-cache")
		c := &kernel.PlainCPU{}
		p := sealedText(t, k, c, 0)
		var raw pgtable.Atomic
		pa, _, _ := k.PT.Translate(raw, p)
		lin := k.Lin(pa)
		if err := k.PT.Protect(raw, lin, lin+k.G.PageSize(), arm64.PTEWrite, arm64.PTERdonly); err != nil {
			t.Fatal(err)
		}
		m := cpu.NewMachine(k, 1, cpu.Cooperative)
		at := linearVA(k) // far from the text and its alias
		if tracked {
			at = p
		}
		mo := monitorFor(k, m, at, nil)
		if g := mo.groupOf(p) != nil; g != tracked {
			t.Fatalf("tracked %v: the text's region is tracked: %v", tracked, g)
		}
		var v *Violation
		if err := mo.Final(); !errors.As(err, &v) || v.Kind != KindWX || v.Addr != p {
			t.Errorf("tracked %v: Final: %v", tracked, err)
		}
	}
}
