package modscan

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// DatasetFormat is the version of the dataset file layout.
const DatasetFormat = 1

// ModuleDataset is the module set of one kernel build: every module with
// its memory-region sizes and dependencies, sorted by name.
type ModuleDataset struct {
	Format int `json:"format"`
	// Generator names the program that wrote the file.
	Generator string `json:"generator"`
	// Source is the scanned file or directory (base name only).
	Source string `json:"source"`
	// Package, Version and Architecture come from the .deb's control file.
	Package      string `json:"package,omitempty"`
	Version      string `json:"version,omitempty"`
	Architecture string `json:"architecture,omitempty"`
	// KernelVersion is the release the modules were built for (first word
	// of their vermagic).
	KernelVersion string `json:"kernel_version"`
	// Vermagic is the vermagic string most modules carry.
	Vermagic string `json:"vermagic"`
	// Layout is the kernel configuration the sizes were computed for.
	Layout LayoutConfig `json:"layout"`
	// Builtin are the names and service aliases of modules built into the
	// kernel image (modules.builtin, modules.builtin.modinfo), sorted: a
	// dependency on one of them needs no loading.
	Builtin []string `json:"builtin,omitempty"`
	// Skipped lists files the kernel would refuse (only with
	// ScanOptions.SkipRejected).
	Skipped []SkippedModule `json:"skipped,omitempty"`
	Modules []Module        `json:"modules"`
}

// SkippedModule is a module file left out of a dataset, and why.
type SkippedModule struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Lookup finds a module by name (the dataset is sorted by name).
func (d *ModuleDataset) Lookup(name string) (*Module, bool) {
	i, ok := slices.BinarySearchFunc(d.Modules, name, func(m Module, n string) int {
		return strings.Compare(m.Name, n)
	})
	if !ok {
		return nil, false
	}
	return &d.Modules[i], true
}

// Clone returns a deep copy.
func (d *ModuleDataset) Clone() *ModuleDataset {
	c := *d
	c.Skipped = clone(d.Skipped)
	c.Builtin = clone(d.Builtin)
	c.Modules = make([]Module, len(d.Modules))
	for i, m := range d.Modules {
		c.Modules[i] = m.clone()
	}
	return &c
}

// DatasetTotals sums a dataset's module memory.
type DatasetTotals struct {
	Modules int
	// Bytes is the laid-out size per region; Alloc the page-aligned size
	// module_memory_alloc asks for.
	Bytes  [NumModMemTypes]uint64
	Alloc  [NumModMemTypes]uint64
	Percpu uint64
	PLTs   int
}

// Totals sums the dataset's regions.
func (d *ModuleDataset) Totals() DatasetTotals {
	var t DatasetTotals
	t.Modules = len(d.Modules)
	for i := range d.Modules {
		m := &d.Modules[i]
		for r := ModMemType(0); r < NumModMemTypes; r++ {
			t.Bytes[r] += m.Size[r]
			t.Alloc[r] += m.AllocSize(r, d.Layout.PageSize)
		}
		t.Percpu += m.Percpu
		t.PLTs += m.PLTs + m.InitPLTs
	}
	return t
}

// finish sorts the modules, checks names, and sets the dataset-wide
// vermagic and kernel version from the most common vermagic (ties broken by
// string order, so the result does not depend on scan order).
func (d *ModuleDataset) finish() error {
	sort.Slice(d.Modules, func(i, j int) bool {
		if d.Modules[i].Name != d.Modules[j].Name {
			return d.Modules[i].Name < d.Modules[j].Name
		}
		return d.Modules[i].Path < d.Modules[j].Path
	})
	for i := 1; i < len(d.Modules); i++ {
		if d.Modules[i].Name == d.Modules[i-1].Name {
			return fmt.Errorf("%w: %s in %s and %s", ErrDuplicateModule,
				d.Modules[i].Name, d.Modules[i-1].Path, d.Modules[i].Path)
		}
	}
	sort.Slice(d.Skipped, func(i, j int) bool { return d.Skipped[i].Path < d.Skipped[j].Path })
	sort.Strings(d.Builtin)
	d.Builtin = slices.Compact(d.Builtin)
	count := map[string]int{}
	for _, m := range d.Modules {
		count[m.Vermagic]++
	}
	best := ""
	for v, n := range count {
		if n > count[best] || (n == count[best] && v < best) {
			best = v
		}
	}
	if d.Vermagic == "" {
		d.Vermagic = best
	}
	for i := range d.Modules {
		if d.Modules[i].Vermagic == d.Vermagic {
			d.Modules[i].Vermagic = ""
		}
	}
	if d.KernelVersion == "" {
		if f := strings.Fields(d.Vermagic); len(f) > 0 {
			d.KernelVersion = f[0]
		}
	}
	return nil
}

// IsBuiltin says whether a name or alias belongs to built-in code.
func (d *ModuleDataset) IsBuiltin(name string) bool {
	_, ok := slices.BinarySearch(d.Builtin, name)
	return ok
}

// aliasIndex maps each normalized service alias to the modules that
// declare it (sorted, as d.Modules is).
func (d *ModuleDataset) aliasIndex() map[string][]string {
	idx := map[string][]string{}
	for i := range d.Modules {
		for _, a := range d.Modules[i].Aliases {
			a = NormalizeModuleName(a)
			if l := idx[a]; len(l) == 0 || l[len(l)-1] != d.Modules[i].Name {
				idx[a] = append(l, d.Modules[i].Name)
			}
		}
	}
	return idx
}

// ResolveName is how modprobe finds what a name means: the module of that
// name, else every module with that service alias (kmod compares names and
// aliases with '-' and '_' equal). It returns nil for a name that only
// built-in code, or nothing, answers to.
func (d *ModuleDataset) ResolveName(name string) []string {
	name = NormalizeModuleName(name)
	if _, ok := d.Lookup(name); ok {
		return []string{name}
	}
	return clone(d.aliasIndex()[name])
}

// VermagicOf is the module's vermagic, the dataset's when it has none of
// its own.
func (d *ModuleDataset) VermagicOf(m *Module) string {
	if m.Vermagic != "" {
		return m.Vermagic
	}
	return d.Vermagic
}

// WriteJSON writes the dataset as JSON with one module per line, so the
// file diffs well; the output depends only on the dataset's contents.
func (d *ModuleDataset) WriteJSON(w io.Writer) error {
	bw := bufio.NewWriter(w)
	head := *d
	head.Modules = nil
	hb, err := json.Marshal(head)
	if err != nil {
		return err
	}
	// hb ends in `"modules":null}`; reopen the array by hand.
	const tail = `"modules":null}`
	if !bytes.HasSuffix(hb, []byte(tail)) {
		return fmt.Errorf("%w: unexpected header encoding", ErrDataset)
	}
	bw.Write(hb[:len(hb)-len(tail)])
	bw.WriteString("\"modules\":[\n")
	for i := range d.Modules {
		mb, err := json.Marshal(&d.Modules[i])
		if err != nil {
			return err
		}
		bw.Write(mb)
		if i < len(d.Modules)-1 {
			bw.WriteByte(',')
		}
		bw.WriteByte('\n')
	}
	bw.WriteString("]}\n")
	return bw.Flush()
}

// ReadModuleDataset decodes a dataset written by WriteJSON, plain or
// gzip-compressed, and checks it: known format, modules sorted by unique
// non-empty names, a valid layout configuration.
func ReadModuleDataset(r io.Reader) (*ModuleDataset, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDataset, err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	var d ModuleDataset
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataset, err)
	}
	if d.Format != DatasetFormat {
		return nil, fmt.Errorf("%w: format %d, want %d", ErrDataset, d.Format, DatasetFormat)
	}
	if err := d.Layout.validate(); err != nil {
		return nil, err
	}
	for i, m := range d.Modules {
		if m.Name == "" {
			return nil, fmt.Errorf("%w: module %d has no name", ErrDataset, i)
		}
		if i > 0 && d.Modules[i-1].Name >= m.Name {
			return nil, fmt.Errorf("%w: modules not sorted or repeated at %d (%s after %s)",
				ErrDataset, i, m.Name, d.Modules[i-1].Name)
		}
	}
	return &d, nil
}
