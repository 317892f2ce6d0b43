package kernel

import (
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// Snapshot is a booted kernel's whole state at one moment: physical memory
// (page owners and free lists), the translation tables (every table page's
// descriptors) and the kernel's own bookkeeping (vmalloc areas and free
// space, the execmem cache, locks, statistics, TLBI counts, warnings).
// Restore returns the kernel to it in place, so the interleaving checker
// boots once per scenario and restores before every schedule. Model-only:
// the kernel has no counterpart.
type Snapshot struct {
	k    *Kernel
	mem  *physmem.Snapshot
	pt   *pgtable.Snapshot
	book *Kernel // a deep copy of everything but Mem and PT
	// objects is how many objects the copy holds (copyBook's map size).
	objects int
}

// Snapshot records k's state. Memory and tables journal or copy what
// changes from here on; the rest of the kernel is copied. Nothing may run
// on k meanwhile; a later Snapshot replaces this one.
func (k *Kernel) Snapshot() *Snapshot {
	s := &Snapshot{k: k, mem: k.Mem.Snapshot(), pt: k.PT.Snapshot(), book: new(Kernel)}
	s.objects = k.copyBook(s.book, k, 0)
	return s
}

// Restore returns k to snapshot s (k's latest). Its cost is the pages and
// table pages in use plus the size of the bookkeeping — not the RAM.
// Objects obtained from k before (a *VMArea, the execmem cache mutex) are
// not k's any more: the bookkeeping is a fresh copy of the snapshot's.
func (k *Kernel) Restore(s *Snapshot) error {
	if s.k != k {
		return fmt.Errorf("%w: restore of another kernel's snapshot", ErrInvalid)
	}
	if err := k.Mem.Restore(s.mem); err != nil {
		return err
	}
	if err := k.PT.Restore(s.pt); err != nil {
		return err
	}
	k.copyBook(k, s.book, s.objects)
	return nil
}

// copyBook deep-copies src's fields except Mem and PT into dst (both
// shared with k): pointers shared inside src stay shared in the copy.
// It returns how many objects it copied or kept (size the next copy of
// the same bookkeeping with it).
func (k *Kernel) copyBook(dst, src *Kernel, size int) int {
	c := copier{seen: make(map[seenKey]reflect.Value, size)}
	// Memory and tables are snapshotted on their own; references to them
	// (or to the kernel itself) from the bookkeeping stay k's.
	for _, p := range []any{k.Mem, k.PT} {
		v := reflect.ValueOf(p)
		c.seen[seenKey{v.Pointer(), planOf(v.Type())}] = v
	}
	if imp := src.Cfg.imported; imp != nil { // a dump's linear map: read-only after boot
		v := reflect.ValueOf(imp)
		c.seen[seenKey{v.Pointer(), planOf(v.Type())}] = v
	}
	kp := planOf(reflect.TypeFor[*Kernel]())
	c.seen[seenKey{reflect.ValueOf(src).Pointer(), kp}] = reflect.ValueOf(dst)
	mem, pt := dst.Mem, dst.PT
	c.copy(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem(), kp.elem)
	dst.Mem, dst.PT = mem, pt
	return len(c.seen)
}

// copier deep-copies Go values, unexported fields included.
type copier struct{ seen map[seenKey]reflect.Value }

// seenKey is an object already copied: its address and its type's plan (a
// struct and its first field share an address).
type seenKey struct {
	p    uintptr
	plan *copyPlan
}

// settable makes a struct field of an addressable value writable.
func settable(v reflect.Value) reflect.Value {
	if v.CanSet() {
		return v
	}
	return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
}

// copyPlan is how values of one type are deep-copied, worked out once per
// type: reflection's per-value questions (is this type flat, where is
// this field) answered up front.
type copyPlan struct {
	t    reflect.Type
	kind reflect.Kind
	// flat: values can be copied by assignment; nothing in them refers to
	// memory a copy must not share (strings are immutable; functions and
	// channels are shared on purpose).
	flat   bool
	fields []fieldPlan // struct: the fields that are not flat
	elem   *copyPlan   // pointer, array, slice: the element; map: the value
	key    *copyPlan   // map
}

type fieldPlan struct {
	off  uintptr
	plan *copyPlan
}

var (
	plansMu sync.Mutex
	plans   sync.Map // reflect.Type -> *copyPlan, complete
)

// planOf returns t's plan, building it (and its parts') on first use.
func planOf(t reflect.Type) *copyPlan {
	if p, ok := plans.Load(t); ok {
		return p.(*copyPlan)
	}
	plansMu.Lock()
	defer plansMu.Unlock()
	building := map[reflect.Type]*copyPlan{}
	p := buildPlan(t, building)
	for t, p := range building {
		plans.Store(t, p)
	}
	return p
}

// buildPlan builds t's plan; building holds the plans under construction
// (a recursive type refers to its own plan).
func buildPlan(t reflect.Type, building map[reflect.Type]*copyPlan) *copyPlan {
	if p, ok := plans.Load(t); ok {
		return p.(*copyPlan)
	}
	if p, ok := building[t]; ok {
		return p
	}
	p := &copyPlan{t: t, kind: t.Kind(), flat: true}
	building[t] = p
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		p.flat = false
		p.elem = buildPlan(t.Elem(), building)
	case reflect.Map:
		p.flat = false
		p.key, p.elem = buildPlan(t.Key(), building), buildPlan(t.Elem(), building)
	case reflect.Interface, reflect.UnsafePointer:
		p.flat = false
	case reflect.Array:
		p.elem = buildPlan(t.Elem(), building)
		p.flat = p.elem.flat || t.Len() == 0
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if fp := buildPlan(f.Type, building); !fp.flat {
				p.fields = append(p.fields, fieldPlan{off: f.Offset, plan: fp})
			}
		}
		p.flat = len(p.fields) == 0
	}
	return p
}

// copy sets dst (settable) to a deep copy of src, both of p's type.
func (c *copier) copy(dst, src reflect.Value, p *copyPlan) {
	if p.flat {
		dst.Set(src)
		return
	}
	switch p.kind {
	case reflect.Pointer:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		key := seenKey{src.Pointer(), p}
		if v, ok := c.seen[key]; ok {
			dst.Set(v)
			return
		}
		n := reflect.New(p.elem.t)
		c.seen[key] = n
		c.copy(n.Elem(), src.Elem(), p.elem)
		dst.Set(n)
	case reflect.Struct:
		if !src.CanAddr() {
			tmp := reflect.New(p.t).Elem()
			tmp.Set(src)
			src = tmp
		}
		// The flat fields by one assignment of the whole struct, then
		// every other field deep-copied over its shallow copy.
		dst.Set(src)
		sb, db := unsafe.Pointer(src.UnsafeAddr()), unsafe.Pointer(dst.UnsafeAddr())
		for _, f := range p.fields {
			c.copy(reflect.NewAt(f.plan.t, unsafe.Add(db, f.off)).Elem(), reflect.NewAt(f.plan.t, unsafe.Add(sb, f.off)).Elem(), f.plan)
		}
	case reflect.Array:
		for i := range src.Len() {
			c.copy(dst.Index(i), src.Index(i), p.elem)
		}
	case reflect.Slice:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		n := reflect.MakeSlice(p.t, src.Len(), src.Cap())
		if p.elem.flat {
			reflect.Copy(n, src)
		} else {
			for i := range src.Len() {
				c.copy(n.Index(i), src.Index(i), p.elem)
			}
		}
		dst.Set(n)
	case reflect.Map:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		n := reflect.MakeMapWithSize(p.t, src.Len())
		it := src.MapRange()
		for it.Next() {
			kv, vv := reflect.New(p.key.t).Elem(), reflect.New(p.elem.t).Elem()
			c.copy(kv, it.Key(), p.key)
			c.copy(vv, it.Value(), p.elem)
			n.SetMapIndex(kv, vv)
		}
		dst.Set(n)
	case reflect.Interface:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		e := src.Elem()
		n := reflect.New(e.Type()).Elem()
		c.copy(n, e, planOf(e.Type()))
		dst.Set(n)
	default: // functions, channels, unsafe pointers: shared
		dst.Set(src)
	}
}

// Diff describes the first difference between k's state and o's: memory,
// tables, then any field of the bookkeeping; "" when they are equal.
// Model-only, for tests of Restore.
func (k *Kernel) Diff(o *Kernel) string {
	if d := k.Mem.Diff(o.Mem); d != "" {
		return "physmem: " + d
	}
	if d := k.PT.Diff(o.PT); d != "" {
		return "tables: " + d
	}
	a, b := new(Kernel), new(Kernel)
	k.copyBook(a, k, 0)
	o.copyBook(b, o, 0)
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		fa, fb := settable(va.Field(i)), settable(vb.Field(i))
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			return fmt.Sprintf("%s: %+v vs %+v", va.Type().Field(i).Name, fa.Interface(), fb.Interface())
		}
	}
	return ""
}
