package ptdump

import (
	"strings"
	"testing"
)

const pastedDump = `~ # cat /sys/kernel/debug/kernel_page_tables
---[ Linear Mapping start ]---
0xffff000000000000-0xffff000000200000          2M PMD       RW NX SHD AF NG     BLK UXN    MEM/NORMAL-TAGGED
0xffff000000200000-0xffff000000400000          2M PMD F     RW x                BLK               DEVICE/nGnRnE
0xffff000000400000-0xffff000000401000          4K PTE F     RW NX SHD AF NG         UXN    MEM/NORMAL-TAGGED
0xffff000000401000-0xffff000000600000       2044K PTE       RW NX SHD AF NG         UXN    MEM/NORMAL-TAGGED
---[ Linear Mapping end ]---
~ #
`

// A dump pasted with the shell prompt and command before it and a prompt
// after it parses without --lenient; an entry printed with F and BLK but no
// AF (an all-zero descriptor) is unmapped, while F with AF stays
// present-invalid.
func TestParsePasted(t *testing.T) {
	d, err := Parse(strings.NewReader(pastedDump), "pasted", ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Ranges) != 4 {
		t.Fatalf("%d ranges", len(d.Ranges))
	}
	if d.Ranges[1].Mapped() {
		t.Error("F BLK without AF counted as mapped")
	}
	if !d.Ranges[2].Mapped() || d.Ranges[2].Valid() {
		t.Error("F with AF is not present-invalid")
	}
	if _, err := Parse(strings.NewReader("0xffff000000000000-0xffff000000200000 2M PMD RW NX SHD AF NG BLK UXN MEM/NORMAL\nnot a dump line\n"), "x", ParseOptions{}); err == nil {
		t.Error("garbage after the first range accepted")
	}
}

func TestIsShellPrompt(t *testing.T) {
	for s, want := range map[string]bool{
		"~ #": true, "~ # cat /sys/kernel/debug/kernel_page_tables": true, "root@box:~# cat x": true,
		"$ sudo cat x": true, "[user@host ~]$": true, "hello world": false, "PTE RW": false, "0x12-0x34": false, "#": true,
	} {
		if got := isShellPrompt([]byte(s)); got != want {
			t.Errorf("isShellPrompt(%q) = %v", s, got)
		}
	}
}
