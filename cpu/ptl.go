package cpu

import "github.com/ptlab/ptlab/pgtable"

// PageTableLock takes init_mm.page_table_lock, as __pte_alloc_kernel and
// __pmd_alloc do around the re-check and install of a new table. It is an
// ordinary lock event, so the explorer can switch CPUs around it.
func (c *CPU) PageTableLock(*pgtable.Tables) { c.Lock(c.m.K.PageTableLock) }

// PageTableUnlock releases init_mm.page_table_lock.
func (c *CPU) PageTableUnlock(*pgtable.Tables) { c.Unlock(c.m.K.PageTableLock) }
