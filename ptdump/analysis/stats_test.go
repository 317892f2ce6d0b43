package analysis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/internal/dumptest"
)

// pageOracle answers per-page questions about a dump by looking each page
// up: slow, obviously right, and independent of Stats' per-line arithmetic.
type pageOracle struct {
	d *ptdump.Dump
}

// at returns the range covering addr, or nil.
func (o pageOracle) at(addr uint64) *ptdump.Range {
	rs := o.d.Ranges
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Last() >= addr })
	if i < len(rs) && rs[i].Start <= addr {
		return &rs[i]
	}
	return nil
}

// bruteTables counts, per table level j >= 1, the distinct level-(j-1)
// entries that contain any line at level j or deeper, block by block.
func bruteTables(d *ptdump.Dump) []uint64 {
	g := &d.Geometry
	counts := make([]uint64, len(g.Levels))
	for j := 1; j < len(g.Levels); j++ {
		seen := map[uint64]bool{}
		size := g.Levels[j-1].Size
		for i := range d.Ranges {
			r := &d.Ranges[i]
			if g.Level(r.Level) < j {
				continue
			}
			for b := r.Start / size; b <= r.Last()/size; b++ {
				seen[b] = true
				if b == ^uint64(0) {
					break
				}
			}
		}
		counts[j] = uint64(len(seen))
	}
	return counts
}

// bruteCollapse checks every PMD block touched by a PTE line page by page.
func bruteCollapse(d *ptdump.Dump) (blocks, tlbBefore uint64) {
	o := pageOracle{d}
	g := &d.Geometry
	n := len(g.Levels)
	block, page := g.Levels[n-2].Size, g.Levels[n-1].Size
	cont := page * uint64(g.Levels[n-1].ContEntries)
	done := map[uint64]bool{}
	for i := range d.Ranges {
		r := &d.Ranges[i]
		if r.Level != g.Levels[n-1].Name || !r.Valid() {
			continue
		}
		for b := r.Start / block; b <= r.Last()/block; b++ {
			if done[b] {
				continue
			}
			done[b] = true
			perm := r.Attrs.Perm
			ok := true
			var before uint64
			for a := b * block; a < (b+1)*block; a += page {
				x := o.at(a)
				if x == nil || x.Level != r.Level || !x.Valid() || x.Attrs.Perm != perm {
					ok = false
					break
				}
				if x.Attrs.Has(ptdump.AttrCont) {
					if a%cont == 0 {
						before++
					}
				} else {
					before++
				}
			}
			if ok {
				blocks++
				tlbBefore += before
			}
		}
	}
	return blocks, tlbBefore
}

// fataler is what checkAgainstOracle needs of *testing.T and *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

func checkAgainstOracle(t fataler, d *ptdump.Dump, s *Summary) {
	t.Helper()
	want := bruteTables(d)
	for _, ts := range s.Total.Tables {
		j := d.Geometry.Level(ts.Level)
		if ts.Tables != want[j] || ts.Bytes != want[j]*d.Geometry.PageSize {
			t.Fatalf("%s tables: %d (%d bytes), brute force %d", ts.Level, ts.Tables, ts.Bytes, want[j])
		}
	}
	blocks, before := bruteCollapse(d)
	c := s.Total.Collapse
	if c.Blocks != blocks || c.TLBEntriesBefore != before || c.TLBEntriesAfter != blocks ||
		c.TablePagesSaved != blocks || c.Bytes != blocks*c.BlockSize {
		t.Fatalf("collapse %+v, brute force %d blocks, %d TLB entries", c, blocks, before)
	}
}

// TestStatsMode3Sample is the done-when check: Ryan Roberts' mode-3
// AmpereOne dump has its linear map over 99% at 4K, and the page-table
// memory that implies. Expected figures come from reading the file with a
// regexp and from per-block brute force, not from Stats.
func TestStatsMode3Sample(t *testing.T) {
	path := "../testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt"
	d := parseFile(t, path, ptdump.ParseOptions{})
	s := Stats(d)
	raw, _ := os.ReadFile(path)
	var mapped, pte uint64
	re := regexp.MustCompile(`(?m)^0x([0-9a-f]+)-0x([0-9a-f]+)\s+\S+ (PTE|PMD|PUD|PGD)( +\S.*)?$`)
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		if m[4] == "" {
			continue
		}
		a, _ := strconv.ParseUint(m[1], 16, 64)
		b, _ := strconv.ParseUint(m[2], 16, 64)
		mapped += b - a
		if m[3] == "PTE" {
			pte += b - a
		}
	}
	lm := s.LinearMap
	if lm == nil {
		t.Fatal("no linear map")
	}
	if lm.MappedBytes != mapped || lm.PTEBytes != pte || lm.ContPTEBytes != 0 {
		t.Errorf("linear map %d bytes, %d PTE; file says %d, %d", lm.MappedBytes, lm.PTEBytes, mapped, pte)
	}
	if lm.BasePageFraction <= 0.99 || lm.PTEFraction != float64(pte)/float64(mapped) {
		t.Errorf("4K fraction %v", lm.BasePageFraction)
	}
	want := bruteTables(d)
	var pages uint64
	for _, n := range want {
		pages += n
	}
	if lm.TablePages != pages || lm.TableBytes != pages*4096 {
		t.Errorf("linear map tables %d pages %d bytes; brute force %d", lm.TablePages, lm.TableBytes, pages)
	}
	checkAgainstOracle(t, d, s)
	var buf bytes.Buffer
	if err := s.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, w := range []string{pct(lm.BasePageFraction), fmt.Sprintf("%d pages, %s", pages, humanBytes(pages*4096))} {
		if !strings.Contains(out, w) {
			t.Errorf("text lacks %q:\n%s", w, out)
		}
	}
	t.Logf("linear map: %s mapped, %.2f%% at 4K, %d table pages (%s), collapse %d blocks",
		humanBytes(lm.MappedBytes), 100*lm.BasePageFraction, lm.TablePages, humanBytes(lm.TableBytes), lm.Collapse.Blocks)
}

// TestStatsBruteForce compares Stats with per-page brute force on random
// dumps: leaf bytes, attribute bytes, table counts and collapse.
func TestStatsBruteForce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := dumptest.Gen(t, 0xffff000000000000, 256<<20, 1, false)
		d, err := parseString(dumptest.Format(t, rs), ptdump.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s := Stats(d)
		if len(d.Ranges) == 0 {
			return
		}
		leaf := map[string]uint64{}
		attrs := map[string]uint64{}
		var valid, invalid, holes uint64
		o := pageOracle{d}
		for a := d.Ranges[0].Start; a <= d.Ranges[len(d.Ranges)-1].Last(); a += 4096 {
			r := o.at(a)
			switch {
			case r == nil:
				continue
			case !r.Mapped():
				holes += 4096
				continue
			case r.Valid():
				valid += 4096
			default:
				invalid += 4096
			}
			leaf[d.Geometry.LeafName(r.Level, r.Attrs.Has(ptdump.AttrCont))] += 4096
			attrs[r.Attrs.Perm] += 4096
		}
		tot := s.Total
		if tot.ValidBytes != valid || tot.InvalidBytes != invalid || tot.UnmappedBytes != holes {
			t.Fatalf("valid/invalid/holes %d/%d/%d want %d/%d/%d", tot.ValidBytes, tot.InvalidBytes, tot.UnmappedBytes, valid, invalid, holes)
		}
		if len(tot.Leaves) != len(leaf) || len(tot.AttrSets) != len(attrs) {
			t.Fatalf("leaves %v attrs %v; want %v %v", tot.Leaves, tot.AttrSets, leaf, attrs)
		}
		for _, l := range tot.Leaves {
			if leaf[l.Leaf] != l.Bytes {
				t.Fatalf("leaf %s: %d want %d", l.Leaf, l.Bytes, leaf[l.Leaf])
			}
		}
		for i, a := range tot.AttrSets {
			if attrs[a.Attrs] != a.Bytes {
				t.Fatalf("attrs %q: %d want %d", a.Attrs, a.Bytes, attrs[a.Attrs])
			}
			if i > 0 && a.Bytes > tot.AttrSets[i-1].Bytes {
				t.Fatalf("attribute sets not sorted by bytes")
			}
		}
		checkAgainstOracle(t, d, s)
		// Everything is in the one linear region: the region equals the total.
		if len(s.Regions) != 1 || s.LinearMap == nil || s.Regions[0].TablePages != tot.TablePages ||
			s.LinearMap.MappedBytes != valid+invalid {
			t.Fatalf("regions %+v", s.Regions)
		}
	})
}

// TestStatsHugeRun: one PTE line over 1 TiB is summarized arithmetically
// (a per-page loop would take minutes).
func TestStatsHugeRun(t *testing.T) {
	cols := dumptest.Cols{SHD: true, AF: true, UXN: true, Mem: "MEM/NORMAL-TAGGED"}.Text()
	base := uint64(0xffff000000000000)
	text := "---[ Linear Mapping start ]---\n" +
		dumptest.Line(base, base+0x1000, "PTE", " RW NX SHD AF UXN MEM/NORMAL") + "\n" +
		dumptest.Line(base+0x1000, base+1<<40+0x1000, "PTE", cols) + "\n" +
		dumptest.Line(base+1<<40+0x1000, base+1<<40+2<<20, "PTE", "") + "\n"
	d, err := parseString(text, ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := Stats(d)
	c := s.Total.Collapse
	const blocks = 1<<40/(2<<20) - 1 // every 2M block but the first (mixed)
	if c.Blocks != blocks || c.TLBEntriesBefore != blocks*512 || c.TableBytesSaved != blocks*4096 {
		t.Errorf("collapse %+v", c)
	}
	tables := map[string]uint64{}
	for _, ts := range s.Total.Tables {
		tables[ts.Level] = ts.Tables
	}
	// PTE tables: 2M blocks of [base, base+1T+2M); PMD tables: 1G blocks;
	// PUD tables: the 512G blocks (3 of them: the range ends 2M into the third).
	if tables["PTE"] != 1<<40/(2<<20)+1 || tables["PMD"] != 1<<40/(1<<30)+1 || tables["PUD"] != 3 {
		t.Errorf("tables %v", tables)
	}
}

func TestStatsSamples(t *testing.T) {
	cases := map[string]func(t *testing.T, d *ptdump.Dump, s *Summary){
		"003-wenboshen-android-4.14-39bitva.txt": func(t *testing.T, d *ptdump.Dump, s *Summary) {
			if !strings.Contains(s.RegionBasis, "pre-5.4") || !hasNote(s, "not printed") {
				t.Errorf("basis %q notes %v", s.RegionBasis, s.Notes)
			}
			if s.Regions[0].Name != "Modules start" || s.Regions[0].Ranges != 0 {
				t.Errorf("first region %+v", s.Regions[0])
			}
			// The linear map is everything after the last marker.
			var want uint64
			last := d.Markers[len(d.Markers)-1]
			for _, r := range d.Ranges[last.FirstRange:] {
				want += r.Size
			}
			if last.Kind != "linear" || s.LinearMap == nil || s.LinearMap.MappedBytes != want {
				t.Errorf("linear map %+v, want %d bytes", s.LinearMap, want)
			}
			checkLeafNames(t, s, "PGD 1G", "contPMD 32M", "PMD 2M", "contPTE 64K", "PTE 4K")
		},
		"006-linux-doc-ptdump-rst-52bitva-excerpt.txt": func(t *testing.T, d *ptdump.Dump, s *Summary) {
			lm := s.LinearMap
			if lm == nil || lm.BasePageFraction != 1 || lm.Collapse.BlockSize != 512<<20 || !strings.Contains(s.RegionBasis, "layout") {
				t.Errorf("linear map %+v basis %q", lm, s.RegionBasis)
			}
			checkLeafNames(t, s, "PTE 64K")
		},
		"901-x86-fedora-4.18rc8-ryzen-dmesg-excerpt.txt": func(t *testing.T, d *ptdump.Dump, s *Summary) {
			if s.LinearMap == nil || s.LinearMap.MappedBytes != 0 || !hasNote(s, "misplaced") {
				t.Errorf("x86 linear map %+v notes %v", s.LinearMap, s.Notes)
			}
			kinds := map[string]bool{}
			for _, r := range s.Regions {
				kinds[r.Kind] = true
			}
			for _, k := range []string{"kernel-space", "linear", "vmalloc", "vmemmap", "cpu-entry", "ldt"} {
				if !kinds[k] {
					t.Errorf("no %s region in %v", k, kinds)
				}
			}
			checkLeafNames(t, s, "pud 1G", "pmd 2M", "pte 4K")
		},
	}
	for _, path := range samples(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			d := parseFile(t, path, ptdump.ParseOptions{})
			s := Stats(d)
			if f := cases[name]; f != nil {
				f(t, d, s)
			}
			// Totals add up over regions.
			var v, n uint64
			for _, r := range s.Regions {
				v += r.ValidBytes
				n += uint64(r.Ranges)
			}
			if v != s.Total.ValidBytes || n != uint64(len(d.Ranges)) {
				t.Errorf("regions sum to %d bytes %d ranges; total %d, %d", v, n, s.Total.ValidBytes, len(d.Ranges))
			}
			checkAgainstOracle(t, d, s)
			// Deterministic text and JSON.
			var a, b bytes.Buffer
			if err := s.WriteText(&a); err != nil {
				t.Fatal(err)
			}
			if err := Stats(d).WriteText(&b); err != nil {
				t.Fatal(err)
			}
			ja, _ := json.Marshal(s)
			jb, _ := json.Marshal(Stats(d))
			if a.String() != b.String() || string(ja) != string(jb) {
				t.Errorf("output not deterministic")
			}
			var m map[string]any
			if err := json.Unmarshal(ja, &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"name", "arch", "page_size", "regions", "total", "linear_map", "notes"} {
				if _, ok := m[k]; !ok {
					t.Errorf("JSON lacks %q", k)
				}
			}
		})
	}
}

func hasNote(s *Summary, sub string) bool {
	for _, n := range s.Notes {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}

func checkLeafNames(t *testing.T, s *Summary, want ...string) {
	t.Helper()
	var got []string
	for _, l := range s.Total.Leaves {
		got = append(got, l.Leaf)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("leaves %v want %v", got, want)
	}
}

func TestStatsEmpty(t *testing.T) {
	d, err := parseString("---[ Modules start ]---\n---[ Modules end ]---\n", ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := Stats(d)
	var buf bytes.Buffer
	if err := s.WriteText(&buf); err != nil || s.LinearMap != nil || len(s.Regions) != 1 {
		t.Errorf("%v %+v", err, s)
	}
}
