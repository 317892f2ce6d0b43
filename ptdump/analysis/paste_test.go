package analysis

import (
	"strings"
	"testing"

	"github.com/ptlab/ptlab/ptdump"
)

// An empty descriptor (F and BLK, no AF) does not count as mapped.
func TestStatsEmptyDescriptorsUnmapped(t *testing.T) {
	const text = `~ # cat /sys/kernel/debug/kernel_page_tables
---[ Linear Mapping start ]---
0xffff000000000000-0xffff000000200000          2M PMD       RW NX SHD AF NG     BLK UXN    MEM/NORMAL-TAGGED
0xffff000000200000-0xffff000000400000          2M PMD F     RW x                BLK               DEVICE/nGnRnE
0xffff000000400000-0xffff000000401000          4K PTE F     RW NX SHD AF NG         UXN    MEM/NORMAL-TAGGED
0xffff000000401000-0xffff000000600000       2044K PTE       RW NX SHD AF NG         UXN    MEM/NORMAL-TAGGED
---[ Linear Mapping end ]---
`
	d, err := ptdump.Parse(strings.NewReader(text), "pasted", ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := Stats(d)
	if s.LinearMap == nil || s.LinearMap.MappedBytes != 4<<20 {
		t.Errorf("linear map mapped bytes %v, want 4M", s.LinearMap)
	}
}

// Per-region table counts add up to the whole dump's: a PTE table holding
// the end of one region and the start of the next counts once.
func TestStatsRegionTablesNotDoubleCounted(t *testing.T) {
	const text = `---[ Modules start ]---
0xffff800000000000-0xffff800000001000          4K PTE       ro x  SHD AF NG         UXN    MEM/NORMAL
0xffff800000001000-0xffff800000100000       1020K PTE
---[ Modules end ]---
---[ vmalloc() area ]---
0xffff800000100000-0xffff800000101000          4K PTE       RW NX SHD AF NG         UXN    MEM/NORMAL
0xffff800000101000-0xffff800000200000       1020K PTE
---[ vmalloc() end ]---
`
	d, err := ptdump.Parse(strings.NewReader(text), "shared", ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := Stats(d)
	var sum uint64
	for _, r := range s.Regions {
		sum += r.TablePages
	}
	if sum != s.Total.TablePages {
		t.Errorf("regions count %d table pages, the dump %d", sum, s.Total.TablePages)
	}
}
