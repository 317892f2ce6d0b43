package analysis

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/ptlab/ptlab/ptdump"
)

// Kinds of change Diff reports.
const (
	DiffSplit      = "split"      // a larger leaf in A is covered by smaller leaves in B
	DiffMerged     = "merged"     // smaller leaves in A became a larger leaf in B
	DiffPermission = "permission" // same leaf size, different attributes
	DiffMapped     = "mapped"     // unmapped (or not printed) in A, mapped in B
	DiffUnmapped   = "unmapped"   // mapped in A, unmapped (or not printed) in B
	DiffLevel      = "level"      // same leaf size and attributes at another level name
)

var diffKindOrder = map[string]int{DiffSplit: 0, DiffMerged: 1, DiffPermission: 2, DiffMapped: 3, DiffUnmapped: 4, DiffLevel: 5}

// DiffChange is one maximal address range with the same change.
type DiffChange struct {
	Start       uint64 `json:"start"`
	End         uint64 `json:"end"` // exclusive; 0 is the top of the address space
	Region      string `json:"region"`
	Kind        string `json:"kind"`
	From        string `json:"from"` // leaf in A ("PMD 2M"), or "unmapped"
	To          string `json:"to"`
	FromAttrs   string `json:"from_attrs"`
	ToAttrs     string `json:"to_attrs"`
	PermChanged bool   `json:"perm_changed"` // attributes differ too (for split/merged)
	LineA       int    `json:"line_a"`       // line in A at Start (0: none)
	LineB       int    `json:"line_b"`
}

// DiffBucket totals the changes of one kind between two leaf sizes in a region.
type DiffBucket struct {
	Region           string `json:"region"`
	Kind             string `json:"kind"`
	From             string `json:"from"`
	To               string `json:"to"`
	Bytes            uint64 `json:"bytes"`
	Changes          int    `json:"changes"`
	PermChangedBytes uint64 `json:"perm_changed_bytes"`
}

// DiffTotal is the bytes changed per kind over the whole dump.
type DiffTotal struct {
	Kind  string `json:"kind"`
	Bytes uint64 `json:"bytes"`
}

// DiffResult is what changed between two dumps of the same machine.
type DiffResult struct {
	A       string       `json:"a"`
	B       string       `json:"b"`
	Totals  []DiffTotal  `json:"totals"`
	Buckets []DiffBucket `json:"buckets"`
	Changes []DiffChange `json:"changes"`
	Notes   []string     `json:"notes"`
}

type diffSide struct {
	d    *ptdump.Dump
	regs []ptdump.Region
	idx  []int
	i    int
}

// cover returns the range of s covering addr x (advancing past ranges that
// end at or before x), or nil.
func (s *diffSide) cover(x uint64) *ptdump.Range {
	for s.i < len(s.d.Ranges) && s.d.Ranges[s.i].Last() < x {
		s.i++
	}
	if s.i < len(s.d.Ranges) && s.d.Ranges[s.i].Start <= x {
		return &s.d.Ranges[s.i]
	}
	return nil
}

// next returns the start of the next range of s above x, if any.
func (s *diffSide) next(x uint64) (uint64, bool) {
	if s.i < len(s.d.Ranges) && s.d.Ranges[s.i].Start > x {
		return s.d.Ranges[s.i].Start, true
	}
	return 0, false
}

// region names the region of the range cover returned last.
func (s *diffSide) region() string {
	reg := s.regs[s.idx[s.i]]
	if reg.Kind != "" && reg.Kind != "gap" {
		return reg.Kind
	}
	return reg.Name
}

func leafLabel(d *ptdump.Dump, r *ptdump.Range) string {
	if r == nil || !r.Mapped() {
		return "unmapped"
	}
	return d.Geometry.LeafName(r.Level, r.Attrs.Has(ptdump.AttrCont))
}

func permOf(r *ptdump.Range) string {
	if r == nil || !r.Mapped() {
		return ""
	}
	return r.Attrs.Perm
}

// Diff compares two dumps range by range. It sweeps both sorted range lists
// together, cutting at every start and end of either (a merge join on
// address boundaries), so its cost is proportional to the number of lines,
// never to the memory covered. Per piece it compares the leaf size (level and
// CON) and the permission columns; unprinted addresses count as unmapped.
func Diff(a, b *ptdump.Dump) *DiffResult {
	res := &DiffResult{A: a.Name, B: b.Name, Totals: []DiffTotal{}, Buckets: []DiffBucket{}, Changes: []DiffChange{}, Notes: []string{}}
	if a.Arch != b.Arch {
		res.Notes = append(res.Notes, fmt.Sprintf("the dumps are of different architectures (%s, %s)", a.Arch, b.Arch))
	}
	if a.Geometry.PageSize != b.Geometry.PageSize || a.Geometry.VABits != b.Geometry.VABits {
		res.Notes = append(res.Notes, fmt.Sprintf("the dumps have different geometries (%s; %s)", a.Geometry, b.Geometry))
	}
	if a.HolesPrinted != b.HolesPrinted {
		res.Notes = append(res.Notes, "one dump omits unmapped ranges: addresses it does not print count as unmapped")
	}
	sa, sb := &diffSide{d: a}, &diffSide{d: b}
	sa.regs, sa.idx = ptdump.Regions(a)
	sb.regs, sb.idx = ptdump.Regions(b)
	if len(a.Ranges) == 0 && len(b.Ranges) == 0 {
		return res
	}
	x := ^uint64(0)
	if len(a.Ranges) > 0 {
		x = a.Ranges[0].Start
	}
	if len(b.Ranges) > 0 {
		x = min(x, b.Ranges[0].Start)
	}
	for {
		ra, rb := sa.cover(x), sb.cover(x)
		if ra == nil && rb == nil {
			na, oka := sa.next(x)
			nb, okb := sb.next(x)
			switch {
			case oka && okb:
				x = min(na, nb)
			case oka:
				x = na
			case okb:
				x = nb
			default:
				return res.finish()
			}
			continue
		}
		// The piece ends where either side's covering range ends or the
		// other side's next range starts.
		last := ^uint64(0)
		for _, c := range []struct {
			r *ptdump.Range
			s *diffSide
		}{{ra, sa}, {rb, sb}} {
			if c.r != nil {
				last = min(last, c.r.Last())
			} else if n, ok := c.s.next(x); ok {
				last = min(last, n-1)
			}
		}
		res.piece(x, last, a, b, ra, rb, sa, sb)
		if last == ^uint64(0) {
			return res.finish()
		}
		x = last + 1
	}
}

// piece classifies [x, last] and adds it to the result.
func (res *DiffResult) piece(x, last uint64, a, b *ptdump.Dump, ra, rb *ptdump.Range, sa, sb *diffSide) {
	ma, mb := ra != nil && ra.Mapped(), rb != nil && rb.Mapped()
	c := DiffChange{Start: x, End: last + 1, From: leafLabel(a, ra), To: leafLabel(b, rb),
		FromAttrs: permOf(ra), ToAttrs: permOf(rb)}
	switch {
	case !ma && !mb:
		return
	case !ma:
		c.Kind = DiffMapped
	case !mb:
		c.Kind = DiffUnmapped
	default:
		la, lb := a.Geometry.LeafSize(ra), b.Geometry.LeafSize(rb)
		c.PermChanged = ra.Attrs.Perm != rb.Attrs.Perm
		switch {
		case la > lb:
			c.Kind = DiffSplit
		case la < lb:
			c.Kind = DiffMerged
		case c.PermChanged:
			c.Kind = DiffPermission
			c.PermChanged = false
		case ra.Level != rb.Level:
			c.Kind = DiffLevel
		default:
			return
		}
	}
	if rb != nil {
		c.Region, c.LineB = sb.region(), rb.Line
	}
	if ra != nil {
		if c.Region == "" {
			c.Region = sa.region()
		}
		c.LineA = ra.Line
	}
	if n := len(res.Changes); n > 0 {
		p := &res.Changes[n-1]
		if p.End == c.Start && p.End != 0 && p.Kind == c.Kind && p.Region == c.Region && p.From == c.From &&
			p.To == c.To && p.FromAttrs == c.FromAttrs && p.ToAttrs == c.ToAttrs && p.PermChanged == c.PermChanged {
			p.End = c.End
			return
		}
	}
	res.Changes = append(res.Changes, c)
}

func (res *DiffResult) finish() *DiffResult {
	type key struct{ region, kind, from, to string }
	order := map[string]int{}
	at := map[key]int{}
	totals := map[string]uint64{}
	for i := range res.Changes {
		c := &res.Changes[i]
		if _, ok := order[c.Region]; !ok {
			order[c.Region] = len(order)
		}
		k := key{c.Region, c.Kind, c.From, c.To}
		j, ok := at[k]
		if !ok {
			j = len(res.Buckets)
			at[k] = j
			res.Buckets = append(res.Buckets, DiffBucket{Region: c.Region, Kind: c.Kind, From: c.From, To: c.To})
		}
		n := c.End - c.Start
		bk := &res.Buckets[j]
		bk.Bytes += n
		bk.Changes++
		if c.PermChanged {
			bk.PermChangedBytes += n
		}
		totals[c.Kind] += n
	}
	sort.SliceStable(res.Buckets, func(i, j int) bool {
		x, y := res.Buckets[i], res.Buckets[j]
		if order[x.Region] != order[y.Region] {
			return order[x.Region] < order[y.Region]
		}
		if diffKindOrder[x.Kind] != diffKindOrder[y.Kind] {
			return diffKindOrder[x.Kind] < diffKindOrder[y.Kind]
		}
		if x.From != y.From {
			return x.From < y.From
		}
		return x.To < y.To
	})
	for _, k := range []string{DiffSplit, DiffMerged, DiffPermission, DiffMapped, DiffUnmapped, DiffLevel} {
		if totals[k] > 0 {
			res.Totals = append(res.Totals, DiffTotal{Kind: k, Bytes: totals[k]})
		}
	}
	return res
}

// WriteText prints the diff: totals, then per region and kind, then up to
// maxChanges individual changes (all of them if maxChanges <= 0).
func (res *DiffResult) WriteText(w io.Writer, maxChanges int) error {
	ew := &errWriter{w: w}
	ew.printf("diff %s -> %s\n", res.A, res.B)
	for _, n := range res.Notes {
		ew.printf("  note: %s\n", n)
	}
	if len(res.Changes) == 0 {
		ew.printf("no changes\n")
		return ew.err
	}
	for _, t := range res.Totals {
		ew.printf("  %-10s %s\n", t.Kind, humanBytes(t.Bytes))
	}
	ew.printf("\n")
	tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "region\tkind\tfrom\tto\tbytes\tchanges\tof which perm changed\n")
	for _, b := range res.Buckets {
		pc := ""
		if b.PermChangedBytes > 0 {
			pc = humanBytes(b.PermChangedBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", b.Region, b.Kind, b.From, b.To, humanBytes(b.Bytes), b.Changes, pc)
	}
	tw.Flush()
	ew.printf("\n")
	n := len(res.Changes)
	if maxChanges > 0 && n > maxChanges {
		n = maxChanges
	}
	tw = tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "range\tsize\tregion\tkind\tA\tB\tlines\n")
	for _, c := range res.Changes[:n] {
		fa, fb := c.From, c.To
		if c.FromAttrs != "" {
			fa += " " + c.FromAttrs
		}
		if c.ToAttrs != "" {
			fb += " " + c.ToAttrs
		}
		fmt.Fprintf(tw, "0x%016x-0x%016x\t%s\t%s\t%s\t%s\t%s\t%d/%d\n", c.Start, c.End, ptdump.FormatSize(c.End-c.Start),
			c.Region, c.Kind, fa, fb, c.LineA, c.LineB)
	}
	tw.Flush()
	if n < len(res.Changes) {
		ew.printf("... %d more changes (use --limit 0 or --json for all)\n", len(res.Changes)-n)
	}
	return ew.err
}
