package tlb

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math"
	"testing"

	"github.com/ptlab/ptlab/pgtable"
)

// pinDigest is the SHA-256 of everything pinScenarios produces, computed
// with the simulator as it was before it was sped up (commit c5c9715): the
// address sequences every pattern draws, and the counts of every model over
// every table shape, through windows, invalidations and flushes. An
// optimisation that changes one draw or one count turns this test red; a
// deliberate change of the model must recompute it (go test -run
// TestPinnedResults -v prints the new digest).
const pinDigest = "c676ed1473a0e258702d8bfd85539aefb162e26d915b6c0c01276a57759f205e"

func pinWrite(h hash.Hash, vs ...uint64) {
	var b [8]byte
	for _, v := range vs {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
}

func pinCounts(h hash.Hash, cs ...Counts) {
	for _, c := range cs {
		pinWrite(h, c.Accesses, c.L1Misses, c.L2Misses, c.Reads, c.Faults, math.Float64bits(c.Cycles))
	}
}

// pinStreams are one stream per pattern with the parameters of the default
// comparison and some others (short and long runs, steep and flat Zipf).
func pinStreams() []*Stream {
	return []*Stream{
		{Name: "text", Kind: Instr, Pattern: Code, Rate: 100e6, RunLines: 8},
		{Name: "bpf", Kind: Instr, Pattern: Code, Rate: 10e6, RunLines: 1},
		{Name: "kv", Kind: Data, Pattern: Zipf, Rate: 100e6, ZipfS: 1.01},
		{Name: "kv steep", Kind: Data, Pattern: Zipf, Rate: 30e6, ZipfS: 2.5},
		{Name: "pc", Kind: Data, Pattern: PageCache, Rate: 100e6, RunLines: 64, ZipfS: 1.01},
		{Name: "gups", Kind: Data, Pattern: Uniform, Rate: 20e6},
	}
}

func pinScenarios(t testing.TB, h hash.Hash) {
	// Address sequences: several ranges of unequal weight (and one empty
	// range), and a single range, per pattern.
	multi := []Range{
		{Start: linBase, Size: 3 * mib, Weight: 20},
		{Start: linBase + 8*mib, Size: 0, Weight: 5},
		{Start: linBase + 16*mib, Size: 40 * mib, Weight: 1},
		{Start: linBase + 128*mib, Size: 64 * kib, Weight: 0},
		{Start: linBase + 256*mib, Size: 700 * mib, Weight: 2.5},
	}
	single := []Range{{Start: linBase, Size: gib + 12*mib, Weight: 1}}
	for _, rs := range [][]Range{multi, single} {
		for _, st := range pinStreams() {
			st.SetRanges(rs)
			var r RNG
			r.Seed(42)
			for i := 0; i < 20000; i++ {
				pinWrite(h, st.Next(&r))
			}
			// Ranges replaced mid-run: the run in progress restarts.
			st.SetRanges(rs[:1])
			for i := 0; i < 100; i++ {
				pinWrite(h, st.Next(&r))
			}
		}
	}

	// Counts: every model over PTEs, contPTEs, blocks, and a mix of 4K
	// text and a block-mapped linear map.
	text := linBase + 32*gib
	shapes := []struct {
		name  string
		size  uint64
		flags pgtable.Flags
		text  bool
	}{
		{"ptes", gib, ptes, false},
		{"contptes", 256 * mib, pgtable.NoBlockMappings, false},
		{"blocks", 4 * gib, 0, false},
		{"mix", 4 * gib, 0, true},
	}
	for _, sh := range shapes {
		pt := tables(t, sh.size, sh.flags)
		data := []Range{{Start: linBase, Size: sh.size, Weight: 1}}
		code := data
		if sh.text {
			if err := pt.Map(pgtable.Direct{}, text, 80*gib, 8*mib, prot, ptes); err != nil {
				t.Fatal(err)
			}
			code = []Range{{Start: text, Size: 6 * mib, Weight: 20}, {Start: text + 6*mib, Size: 2 * mib, Weight: 1}}
		}
		for _, m := range models {
			sts := pinStreams()
			for _, st := range sts {
				if st.Kind == Instr {
					st.SetRanges(code)
				} else {
					st.SetRanges(data)
				}
			}
			sim := NewSim(New(m, pt), 7, sts...)
			for w := uint64(0); w < 6; w++ {
				sim.Reseed(w)
				c := sim.Window(20000)
				pinCounts(h, c[Data], c[Instr])
				switch w {
				case 1:
					pinWrite(h, uint64(sim.T.Invalidate(linBase+mib, linBase+9*mib, true)))
				case 2:
					pinWrite(h, uint64(sim.T.Invalidate(text, text+2*mib, false)))
				case 3:
					var ll, al []Span
					for i := uint64(0); i < 40; i++ {
						ll = append(ll, Span{linBase + i*3*mib, linBase + i*3*mib + 64*kib})
						al = append(al, Span{text + i*128*kib, text + i*128*kib + 4*kib})
					}
					pinWrite(h, uint64(sim.T.InvalidateBatch(ll, al)))
				case 4:
					pinWrite(h, uint64(sim.T.Flush()))
				}
			}
			pinCounts(h, sim.T.C[Data], sim.T.C[Instr])
		}
	}
}

// TestPinnedResults: the simulator's results are byte-identical to those of
// the code before its speed-up (see pinDigest).
func TestPinnedResults(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a few million accesses")
	}
	h := sha256.New()
	pinScenarios(t, h)
	got := hex.EncodeToString(h.Sum(nil))
	t.Logf("digest %s", got)
	if got != pinDigest {
		t.Errorf("results changed: digest %s, pinned %s", got, pinDigest)
	}
}
