package pgtable

// ReleaseGeneration changes whenever a table page is released or the tables
// are restored from a snapshot, and at no other time: until it changes, a
// page that is a table stays one at its level (a cache of LevelOf may hold
// it).
func (t *Tables) ReleaseGeneration() uint64 { return t.sgen.Load() }
