package kernel

import (
	"fmt"
	"sync"
)

// modelErrs collects, over every kernel of the process, errors that only a
// broken model can produce. Tests fail when there is any (TestMain).
var modelErrs struct {
	sync.Mutex
	n     uint64
	first []string // the first few, for the test failure
}

// ModelErrors returns how many model errors any kernel of this process has
// met (see modelError) and the first few of them. A faithful model keeps the
// count at zero; runs with injected mutations do not count.
func ModelErrors() (n uint64, first []string) {
	modelErrs.Lock()
	defer modelErrs.Unlock()
	return modelErrs.n, append([]string(nil), modelErrs.first...)
}

// modelError records an error that the model's own bookkeeping says cannot
// happen — a table page that is not one, a free of a page the area does not
// own — at a point where the kernel has no error to return (the kernel's
// equivalent would be a WARN or a BUG). It is WARNed once per place, so it
// shows in the metrics and in ptlab's output, and counted for the tests.
// Under an injected mutation corruption is the expected outcome and is
// only WARNed.
func (k *Kernel) modelError(where string, err error) {
	if err == nil {
		return
	}
	msg := fmt.Sprintf("ptlab model error in %s: %v", where, err)
	if k.Mutations == (Mutations{}) {
		modelErrs.Lock()
		modelErrs.n++
		if len(modelErrs.first) < 8 {
			modelErrs.first = append(modelErrs.first, msg)
		}
		modelErrs.Unlock()
	}
	k.warnOnce("model:"+where, "%s", msg)
}

// kernelIgnores records an error the kernel itself drops at this point (the
// return value of a call it does not check): the model behaves the same,
// but says so once in the warnings instead of hiding it.
func (k *Kernel) kernelIgnores(where string, err error) {
	if err == nil {
		return
	}
	k.warnOnce("ignored:"+where, "%s failed and the kernel ignores it: %v", where, err)
}
