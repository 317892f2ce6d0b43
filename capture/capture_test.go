package capture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/ptdump"
)

// testLeaf is one mapping the fake kernel makes.
type testLeaf struct {
	va, pa uint64
	l      arm64.Level
	prot   uint64
}

// buildScene maps, for a geometry case: the first 8 pages of the linear map
// with PAGE_KERNEL (page 3 read-only), one linear-map block, the kernel text
// (ROX) and a vmalloc page (RW, data); rwx adds one writable+executable page.
func buildScene(t testing.TB, c geometryCase, rwx bool) (*fakeKernel, []testLeaf) {
	fk, err := newFakeKernel(c.pageShift, c.vaConfig, c.vaActual)
	if err != nil {
		t.Fatal(err)
	}
	g := fk.hw
	ps := g.PageSize()
	var leaves []testLeaf
	add := func(va, pa uint64, l arm64.Level, prot uint64) {
		if err := fk.mapLeaf(va, pa, l, prot); err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, testLeaf{va, pa, l, prot})
	}
	lin := fk.linearVA(fk.ramStart)
	for i := uint64(0); i < 8; i++ {
		prot := arm64.Tagged(arm64.PageKernel)
		if i == 3 {
			prot = arm64.Tagged(arm64.PageKernelRO)
		}
		add(lin+i*ps, fk.ramStart+i*ps, arm64.LastLevel, prot)
	}
	blk := g.Size(arm64.LevelPMD)
	add(lin+blk*4, fk.ramStart+blk*4, 2, arm64.Tagged(arm64.PageKernel))
	add(fk.kimageVA, fk.kimagePA, arm64.LastLevel, arm64.PageKernelROX)
	add(fk.kimageVA+ps, fk.kimagePA+ps, arm64.LastLevel, arm64.PageKernelROX)
	add(fk.kimageVA+16*ps, fk.kimagePA+16*ps, arm64.LastLevel, arm64.PageKernelRO)
	add(fk.layout.VmallocStart+64*ps, fk.ramStart+100*ps, arm64.LastLevel, arm64.PageKernel)
	if rwx {
		add(fk.layout.VmallocStart+80*ps, fk.ramStart+101*ps, arm64.LastLevel, arm64.PageKernelExec)
	}
	return fk, leaves
}

func captureScene(t testing.TB, fk *fakeKernel, opt Options) (string, *Result) {
	k, m := mustMachine(t, fk)
	var b bytes.Buffer
	r, err := Capture(&b, k, m, opt)
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), r
}

// TestCaptureSyntheticKernels: on every geometry, the captured dump parses,
// maps exactly the leaves the fake kernel made, at their physical addresses
// and with their permissions, and is byte-identical when repeated.
func TestCaptureSyntheticKernels(t *testing.T) {
	for _, c := range geometryCases {
		t.Run(c.String(), func(t *testing.T) {
			fk, leaves := buildScene(t, c, false)
			text, r := captureScene(t, fk, Options{PA: true, Tables: true})
			if again, _ := captureScene(t, fk, Options{PA: true, Tables: true}); again != text {
				t.Fatal("two captures of the same memory differ")
			}
			d, err := ptdump.Parse(strings.NewReader(text), "synthetic", ptdump.ParseOptions{})
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if len(d.Warnings) != 0 {
				t.Errorf("warnings %v", d.Warnings)
			}
			if r.WXPages != 0 || !strings.Contains(r.WXVerdict, "passed") {
				t.Errorf("W+X: %d pages, %q", r.WXPages, r.WXVerdict)
			}
			if len(d.Tables) != r.TablesRead-1 || r.TablesRead != fk.tables+1 {
				t.Errorf("%d TBL lines, %d tables read, %d tables built", len(d.Tables), r.TablesRead, fk.tables)
			}
			g := fk.hw
			var mapped uint64
			for _, rg := range d.Ranges {
				if rg.Mapped() {
					mapped += rg.End - rg.Start
				}
			}
			var want uint64
			for _, lf := range leaves {
				size := g.Size(lf.l)
				want += size
				var rg *ptdump.Range
				for i := range d.Ranges {
					if d.Ranges[i].Start <= lf.va && lf.va-d.Ranges[i].Start < d.Ranges[i].End-d.Ranges[i].Start {
						rg = &d.Ranges[i]
					}
				}
				if rg == nil || !rg.Valid() || lf.va+size > rg.End && rg.End != 0 {
					t.Errorf("leaf %#x+%#x: range %+v", lf.va, size, rg)
					continue
				}
				if !rg.HasPA || rg.PA+(lf.va-rg.Start) != lf.pa {
					t.Errorf("leaf %#x: PA %#x (line %d), want %#x", lf.va, rg.PA+(lf.va-rg.Start), rg.Line, lf.pa)
				}
				if rg.Attrs.Has(ptdump.AttrReadOnly) != (lf.prot&arm64.PTERdonly != 0) ||
					rg.Attrs.Has(ptdump.AttrNX) != (lf.prot&arm64.PTEPXN != 0) {
					t.Errorf("leaf %#x prot %#x: attrs %q", lf.va, lf.prot, rg.Attrs.Text)
				}
				if wantLevel := g.Name(lf.l); rg.Level != wantLevel {
					t.Errorf("leaf %#x: level %s, want %s", lf.va, rg.Level, wantLevel)
				}
			}
			if mapped != want {
				t.Errorf("dump maps %#x bytes, the kernel mapped %#x\n%s", mapped, want, text)
			}
		})
	}
}

func TestCaptureReportsWX(t *testing.T) {
	fk, _ := buildScene(t, geometryCases[0], true)
	_, r := captureScene(t, fk, Options{})
	if r.WXPages != 1 || r.WXVerdict != "Checked W+X mappings: FAILED, 1 W+X pages found, 0 non-UXN pages found" {
		t.Errorf("W+X pages %d, verdict %q", r.WXPages, r.WXVerdict)
	}
}

func TestCaptureJSON(t *testing.T) {
	fk, leaves := buildScene(t, geometryCases[2], false) // 4K, 52-bit, LPA2
	k := mustKcore(t, fk)
	m, err := DetectMachine(k, nil, MachineHints{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := CaptureJSON(&b, k, m, Options{PA: true, Tables: true}); err != nil {
		t.Fatal(err)
	}
	var out JSONOutput
	if err := json.Unmarshal(b.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Machine.Geometry != "4K/52-bit/5 levels/LPA2" || out.Machine.StartLevel != -1 || !out.Machine.LPA2 ||
		out.Machine.SwapperPgDir != fmt.Sprintf("%#016x", fk.swapperVA) || out.Dump == nil || len(out.Dump.Tables) == 0 {
		t.Fatalf("machine %+v, dump %v", out.Machine, out.Dump != nil)
	}
	valid := 0
	for _, r := range out.Dump.Ranges {
		if r.Attrs != nil && r.HasPA {
			valid++
		}
	}
	if valid == 0 || valid > len(leaves) {
		t.Errorf("%d mapped ranges with PA for %d leaves", valid, len(leaves))
	}
}

// BenchmarkCapture walks a 4K/48-bit kernel whose 1 GiB linear map is all
// PTEs (rodata=full without BBML2: 512 PTE tables), the common case on
// distribution kernels.
func BenchmarkCapture(b *testing.B) {
	fk, err := newFakeKernel(12, 48, 48)
	if err != nil {
		b.Fatal(err)
	}
	lin := fk.linearVA(fk.ramStart)
	const pages = 1 << 18
	for i := uint64(0); i < pages; i++ {
		prot := arm64.Tagged(arm64.PageKernel)
		if i%97 == 0 {
			prot = arm64.Tagged(arm64.PageKernelRO) // break runs like real dumps
		}
		if err := fk.mapLeaf(lin+i<<12, fk.ramStart+i<<12, arm64.LastLevel, prot); err != nil {
			b.Fatal(err)
		}
	}
	k := mustKcore(b, fk)
	m, err := DetectMachine(k, nil, MachineHints{})
	if err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	b.ResetTimer()
	var tables int
	for i := 0; i < b.N; i++ {
		out.Reset()
		r, err := Capture(&out, k, m, Options{PA: true})
		if err != nil {
			b.Fatal(err)
		}
		tables = r.TablesRead
	}
	b.ReportMetric(float64(tables)*float64(b.N)/b.Elapsed().Seconds(), "tables/s")
	b.ReportMetric(float64(bytes.Count(out.Bytes(), []byte("\n")))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkReadKallsyms reads a 150k-line kallsyms (6.12's size).
func BenchmarkReadKallsyms(b *testing.B) {
	var sb strings.Builder
	for i := 0; i < 150000; i++ {
		fmt.Fprintf(&sb, "%016x t sym_%d\n", 0xffff800080000000+uint64(i)*64, i)
	}
	sb.WriteString("ffff800080001000 T swapper_pg_dir\n")
	in := sb.String()
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := ReadKallsyms(strings.NewReader(in), KernelSymbols)
		if err != nil || s["swapper_pg_dir"] == 0 {
			b.Fatal(err)
		}
	}
}
