package trace

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCommittedRecording replays the committed QEMU recordings (Debian
// 6.12.117 and 7.3.4 arm64, -cpu max,pauth-impdef=on, KASLR on; made by
// TestTraceOnRealKernel with PTLAB_TRACE_SAVE) between their "before" and
// "after" marks under mainline, pinned, starting from the "before" capture,
// and compares the model's change of the module/vmalloc region (page by
// page) and of the linear map (per permission and leaf size) with the real
// one. Every difference must be explained by the recording. qemu-6.12-2 is a
// run where do_free_init's worker purged a module's init text while the next
// insmod was between two region allocations: nls_ucs2_utils' text took its
// VA (alloc_vmap_area, line 866) before the purge (line 867) and went high,
// its data after it and took the purged VA; the execmem_alloc kretprobe of
// the text fired only at line 1120. Only a replay that releases VA at the
// recorded purges, between the region allocations, ordered by the VA
// allocations, places both where the kernel did. In qemu-6.12-3 isofs'
// do_free_init ran after the "after" mark: its init text stays allocated
// through the window (recorded purges there must not release its VA), so
// mtd's ro_after_init goes above it as in the kernel. qemu-6.12-nokaslr is
// a boot with nokaslr, whose module region the model places itself. The
// "-tables" recordings were captured with --pa --tables: their table pages
// compare exactly (checkTables), the older ones' from the leaf estimate.
func TestCommittedRecording(t *testing.T) {
	for _, kver := range committedRecordings {
		t.Run(kver, func(t *testing.T) {
			dir := filepath.Join("testdata", "qemu-"+kver)
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
		})
	}
}

// committedRecordings are the directories testdata/qemu-NAME.
var committedRecordings = []string{"6.12", "6.12-2", "6.12-3", "6.12-nokaslr", "7.3", "6.12-tables", "6.12-nokaslr-tables", "7.3-tables"}

// TestRecordingDir checks a recording saved by TestTraceOnRealKernel
// (PTLAB_TRACE_SAVE) again, imported and on ptlab's own boot:
// PTLAB_TRACE_DIR=DIR with recording.txt, before.txt and after.txt.
func TestRecordingDir(t *testing.T) {
	dir := os.Getenv("PTLAB_TRACE_DIR")
	if dir == "" {
		t.Skip("set PTLAB_TRACE_DIR to a directory saved with PTLAB_TRACE_SAVE")
	}
	t.Run("imported", func(t *testing.T) {
		checkRecording(t, filepath.Join(dir, "recording.txt"), filepath.Join(dir, "before.txt"), filepath.Join(dir, "after.txt"))
	})
	t.Run("ownboot", func(t *testing.T) {
		read := func(n string) []byte { return readXZ(t, filepath.Join(dir, n)) }
		checkOwnBoot(t, filepath.Base(dir), read("recording.txt"), read("before.txt"), read("after.txt"))
	})
}
