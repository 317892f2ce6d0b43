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
}

// Snapshot records k's state. Memory and tables journal or copy what
// changes from here on; the rest of the kernel is copied. Nothing may run
// on k meanwhile; a later Snapshot replaces this one.
func (k *Kernel) Snapshot() *Snapshot {
	s := &Snapshot{k: k, mem: k.Mem.Snapshot(), pt: k.PT.Snapshot(), book: new(Kernel)}
	k.copyBook(s.book, k)
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
	k.copyBook(k, s.book)
	return nil
}

// copyBook deep-copies src's fields except Mem and PT into dst (both
// shared with k): pointers shared inside src stay shared in the copy.
func (k *Kernel) copyBook(dst, src *Kernel) {
	c := copier{seen: map[seenKey]reflect.Value{}}
	// Memory and tables are snapshotted on their own; references to them
	// (or to the kernel itself) from the bookkeeping stay k's.
	for _, p := range []any{k.Mem, k.PT} {
		v := reflect.ValueOf(p)
		c.seen[seenKey{v.Pointer(), v.Type()}] = v
	}
	if imp := src.Cfg.imported; imp != nil { // a dump's linear map: read-only after boot
		c.seen[seenKey{reflect.ValueOf(imp).Pointer(), reflect.TypeOf(imp)}] = reflect.ValueOf(imp)
	}
	c.seen[seenKey{reflect.ValueOf(src).Pointer(), reflect.TypeFor[*Kernel]()}] = reflect.ValueOf(dst)
	mem, pt := dst.Mem, dst.PT
	c.copy(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem())
	dst.Mem, dst.PT = mem, pt
}

// copier deep-copies Go values, unexported fields included.
type copier struct{ seen map[seenKey]reflect.Value }

type seenKey struct {
	p uintptr
	t reflect.Type
}

// settable makes a struct field of an addressable value writable.
func settable(v reflect.Value) reflect.Value {
	if v.CanSet() {
		return v
	}
	return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
}

var flatTypes sync.Map // reflect.Type -> bool: no pointer to follow inside

// flat says whether values of t can be copied by assignment: nothing in
// them refers to memory a copy must not share (strings are immutable;
// functions and channels are shared on purpose).
func flat(t reflect.Type) bool {
	if f, ok := flatTypes.Load(t); ok {
		return f.(bool)
	}
	f := true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface, reflect.UnsafePointer:
		f = false
	case reflect.Array:
		f = flat(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !flat(t.Field(i).Type) {
				f = false
				break
			}
		}
	}
	flatTypes.Store(t, f)
	return f
}

// copy sets dst (settable) to a deep copy of src.
func (c *copier) copy(dst, src reflect.Value) {
	t := src.Type()
	if flat(t) {
		dst.Set(src)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		key := seenKey{src.Pointer(), t}
		if v, ok := c.seen[key]; ok {
			dst.Set(v)
			return
		}
		n := reflect.New(t.Elem())
		c.seen[key] = n
		c.copy(n.Elem(), src.Elem())
		dst.Set(n)
	case reflect.Struct:
		if !src.CanAddr() {
			tmp := reflect.New(t).Elem()
			tmp.Set(src)
			src = tmp
		}
		for i := range t.NumField() {
			c.copy(settable(dst.Field(i)), settable(src.Field(i)))
		}
	case reflect.Array:
		for i := range src.Len() {
			c.copy(dst.Index(i), src.Index(i))
		}
	case reflect.Slice:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		n := reflect.MakeSlice(t, src.Len(), src.Cap())
		if flat(t.Elem()) {
			reflect.Copy(n, src)
		} else {
			for i := range src.Len() {
				c.copy(n.Index(i), src.Index(i))
			}
		}
		dst.Set(n)
	case reflect.Map:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		n := reflect.MakeMapWithSize(t, src.Len())
		it := src.MapRange()
		kt, vt := t.Key(), t.Elem()
		for it.Next() {
			kv, vv := reflect.New(kt).Elem(), reflect.New(vt).Elem()
			c.copy(kv, it.Key())
			c.copy(vv, it.Value())
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
		c.copy(n, e)
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
	k.copyBook(a, k)
	o.copyBook(b, o)
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		fa, fb := settable(va.Field(i)), settable(vb.Field(i))
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			return fmt.Sprintf("%s: %+v vs %+v", va.Type().Field(i).Name, fa.Interface(), fb.Interface())
		}
	}
	return ""
}
