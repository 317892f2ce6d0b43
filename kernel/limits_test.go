package kernel

import (
	"errors"
	"strings"
	"testing"
)

// A PTE-mapped linear map is refused before anything is allocated when its
// tables would exceed MaxModelTableBytes (4 TiB of RAM with 4K pages is
// exactly the limit), and accepted at the limit; rodata=noalias lifts it.
func TestTableLimit(t *testing.T) {
	for _, tc := range []struct {
		ram    uint64
		rodata Rodata
		ok     bool
	}{
		{4 << 40, "", true},
		{4<<40 + 1<<30, "", false},
		{8 << 40, "", false},
		{8 << 40, "noalias", true},
	} {
		c, err := Machine("n1-server")
		if err != nil {
			t.Fatal(err)
		}
		c.RAM = []RAMRegion{{Base: 0x80000000, Size: Size(tc.ram)}}
		if tc.rodata != "" {
			c.Rodata = tc.rodata
		}
		err = c.Validate()
		if tc.ok && err != nil {
			t.Errorf("%d GiB rodata=%q: %v", tc.ram>>30, tc.rodata, err)
		}
		if !tc.ok && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "PTE tables")) {
			t.Errorf("%d GiB rodata=%q: want ErrConfig naming the PTE tables, got %v", tc.ram>>30, tc.rodata, err)
		}
	}
}
