package pgtable

// Protect rewrites every descriptor mapping [start, end) as
// (old &^ clear) | set. It is the lockless kernel page walk that
// update_range_prot runs with pageattr_ops: empty upper-level slots are
// skipped; a PUD or PMD leaf must be covered whole, otherwise the walk stops
// with ErrInvalid (the WARN_ON_ONCE in pageattr_pud_entry/pageattr_pmd_entry)
// leaving what it already changed; every PTE slot of a present PTE table in
// the range is rewritten, empty ones included. Contiguous runs are not
// checked: keeping them whole is the caller's duty, as in the kernel.
func (t *Tables) Protect(d Door, start, end, set, clear uint64) error {
	if end-start == t.lean.pageSize && start&(end-start-1) == 0 && t.tr == nil {
		if dd, direct := d.(Direct); direct && t.protectPageDirect(dd.WalkCache, start, set, clear) {
			// One page through the plain Direct door (lean.go).
			return nil
		}
	}
	var v visitor // field by field: a literal is built aside and copied
	v.op, v.protect.set, v.protect.clear = opProtect, set, clear
	return walkCached(t, d, &v, start, end)
}
