package modscan

import (
	"sort"
	"strings"
)

// LoadOrder is a module set ordered for loading, dependencies first.
type LoadOrder struct {
	// Order is every module to load, each after the modules it depends on
	// (except along the edges listed in Cycles).
	Order []string
	// Requested counts the distinct names asked for that the dataset has.
	Requested int
	// Added are modules not asked for that the set needs (sorted).
	Added []string
	// BuiltinRequested are names asked for that are built into this
	// kernel, so need no loading (sorted).
	BuiltinRequested []string
	// MissingRequested are names asked for that neither a module of the
	// dataset nor built-in code answers to: another kernel's driver, or a
	// module since renamed or merged (sorted).
	MissingRequested []string
	// BuiltinDeps are softdeps that built-in code satisfies (sorted).
	BuiltinDeps []string
	// MissingDeps are dependencies nothing answers to (sorted; depends=
	// never points outside the package, softdeps may).
	MissingDeps []string
	// Cycles are the dependency edges "a -> b" dropped to break cycles, in
	// the order the walk found them.
	Cycles []string
}

// NormalizeModuleName is how kmod compares module names: '-' and '_' are
// the same.
func NormalizeModuleName(n string) string { return strings.ReplaceAll(strings.TrimSpace(n), "-", "_") }

// dependencies are the names that must be loaded before m: its depends=
// (which the kernel needs resolved before it can link m) and, when
// softdeps is set, its softdep pre: names (which modprobe loads first).
// Sorted and without repeats, so the order does not depend on .modinfo.
func dependencies(m *Module, softdeps bool) []string {
	deps := make([]string, 0, len(m.Depends)+len(m.SoftdepPre))
	for _, d := range m.Depends {
		deps = append(deps, NormalizeModuleName(d))
	}
	if softdeps {
		for _, d := range m.SoftdepPre {
			deps = append(deps, NormalizeModuleName(d))
		}
	}
	return sortedUnique(deps, m.Name)
}

func sortedUnique(deps []string, self string) []string {
	sort.Strings(deps)
	out := deps[:0]
	for i, d := range deps {
		if d != "" && d != self && (i == 0 || d != deps[i-1]) {
			out = append(out, d)
		}
	}
	return out
}

// LoadOrder orders the named modules and, transitively, their dependencies
// for loading: a depth-first walk in name order that emits a module after
// everything it depends on, as modprobe does when it resolves a module's
// dependencies before inserting it. softdeps adds softdep pre: modules as
// dependencies. Unknown names are reported, not fatal; a dependency cycle
// (which depmod would reject) is broken at the edge that closes it.
func (d *ModuleDataset) LoadOrder(names []string, softdeps bool) LoadOrder {
	return d.loadOrder(names, softdeps, false)
}

// LoadOrderAsGiven is LoadOrder with the named modules taken in the order
// given, as `modprobe a; modprobe b; ...` loads them: each after its own
// not yet loaded dependencies.
func (d *ModuleDataset) LoadOrderAsGiven(names []string, softdeps bool) LoadOrder {
	return d.loadOrder(names, softdeps, true)
}

func (d *ModuleDataset) loadOrder(names []string, softdeps, asGiven bool) LoadOrder {
	var lo LoadOrder
	requested := map[string]bool{}
	var roots []string
	for _, n := range names {
		n = NormalizeModuleName(n)
		if n == "" || requested[n] {
			continue
		}
		requested[n] = true
		if _, ok := d.Lookup(n); !ok {
			if d.IsBuiltin(n) {
				lo.BuiltinRequested = append(lo.BuiltinRequested, n)
			} else {
				lo.MissingRequested = append(lo.MissingRequested, n)
			}
			continue
		}
		roots = append(roots, n)
	}
	aliases := d.aliasIndex()
	// resolve is ResolveName with the index built once: a dependency that
	// is no module's name may be a service alias (softdep "crc32c").
	resolve := func(name string) []string {
		if _, ok := d.Lookup(name); ok {
			return []string{name}
		}
		return aliases[name]
	}
	if !asGiven {
		sort.Strings(roots)
	}
	lo.Requested = len(roots)
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	builtinDep, missingDep := map[string]bool{}, map[string]bool{}
	var visit func(n string)
	visit = func(n string) {
		if state[n] != unseen {
			return
		}
		m, _ := d.Lookup(n)
		state[n] = active
		var deps []string
		for _, dep := range dependencies(m, softdeps) {
			r := resolve(dep)
			if len(r) == 0 {
				if d.IsBuiltin(dep) {
					builtinDep[dep] = true
				} else {
					missingDep[dep] = true
				}
			}
			deps = append(deps, r...)
		}
		for _, dep := range sortedUnique(deps, n) {
			if state[dep] == active {
				lo.Cycles = append(lo.Cycles, n+" -> "+dep)
				continue
			}
			visit(dep)
		}
		state[n] = done
		lo.Order = append(lo.Order, n)
		if !requested[n] {
			lo.Added = append(lo.Added, n)
		}
	}
	for _, r := range roots {
		visit(r)
	}
	for n := range missingDep {
		lo.MissingDeps = append(lo.MissingDeps, n)
	}
	for n := range builtinDep {
		lo.BuiltinDeps = append(lo.BuiltinDeps, n)
	}
	sort.Strings(lo.Added)
	sort.Strings(lo.BuiltinRequested)
	sort.Strings(lo.MissingRequested)
	sort.Strings(lo.BuiltinDeps)
	sort.Strings(lo.MissingDeps)
	return lo
}

// AllInDependencyOrder is LoadOrder for every module of the dataset.
func (d *ModuleDataset) AllInDependencyOrder(softdeps bool) LoadOrder {
	names := make([]string, len(d.Modules))
	for i := range d.Modules {
		names[i] = d.Modules[i].Name
	}
	return d.LoadOrder(names, softdeps)
}

// ReverseDependencies maps each module to the modules whose depends= name
// it (sorted), for unloading in the right order.
func (d *ModuleDataset) ReverseDependencies() map[string][]string {
	out := map[string][]string{}
	for i := range d.Modules {
		m := &d.Modules[i]
		for _, dep := range dependencies(m, false) {
			out[dep] = append(out[dep], m.Name)
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}
