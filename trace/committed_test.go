package trace

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCommittedRecording replays the committed QEMU recording (Debian
// 6.12.117 arm64, -cpu max,pauth-impdef=on, KASLR on; made by
// TestTraceOnRealKernel with PTLAB_TRACE_SAVE) between its "before" and
// "after" marks under mainline, starting from the "before" capture, and
// compares the model's change of the module, vmalloc and linear-map regions
// with the real one.
func TestCommittedRecording(t *testing.T) {
	dir := filepath.Join("testdata", "qemu-6.12")
	tmp := t.TempDir()
	var paths [3]string
	for i, n := range []string{"recording", "before", "after"} {
		b, err := os.ReadFile(filepath.Join(dir, n+".txt.xz"))
		if err != nil {
			t.Fatal(err)
		}
		if b, err = decompress(b, n); err != nil {
			t.Fatal(err)
		}
		paths[i] = filepath.Join(tmp, n+".txt")
		if err := os.WriteFile(paths[i], b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkRecording(t, paths[0], paths[1], paths[2])
}
