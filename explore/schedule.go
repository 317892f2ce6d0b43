package explore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrSchedule reports a schedule that cannot be parsed or replayed.
var ErrSchedule = errors.New("explore: bad schedule")

// Schedule is which CPU performs each step of a run: one entry per door call
// (descriptor load or store, table alloc or free, lock or rwsem operation,
// TLBI, hardware walk read, access, operation begin and end), in order.
// Replaying it on the same scenario, preset and mutations reproduces the run
// exactly. Steps past its end continue with the running CPU (or the lowest
// runnable one when it cannot run).
type Schedule []int8

// String is the run-length form, "0x12 1x3 0x40": CPU x steps, in order.
func (s Schedule) String() string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] == s[i] {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%dx%d", s[i], j-i)
		i = j
	}
	return b.String()
}

// Switches is the number of context switches in the schedule.
func (s Schedule) Switches() int {
	n := 0
	for i := 1; i < len(s); i++ {
		if s[i] != s[i-1] {
			n++
		}
	}
	return n
}

// ParseSchedule reads a schedule in run-length form ("0x12 1x3") or as a
// comma- or space-separated list of CPU numbers ("0,0,1,1,0"); both may be
// mixed.
func ParseSchedule(text string) (Schedule, error) {
	var s Schedule
	fields := strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	for _, f := range fields {
		cpuText, countText, rle := strings.Cut(f, "x")
		c, err := strconv.ParseUint(cpuText, 10, 7)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: CPU %q", ErrSchedule, f, cpuText)
		}
		n := uint64(1)
		if rle {
			if n, err = strconv.ParseUint(countText, 10, 32); err != nil || n == 0 {
				return nil, fmt.Errorf("%w: %q: count %q", ErrSchedule, f, countText)
			}
		}
		if len(s)+int(n) > 1<<24 {
			return nil, fmt.Errorf("%w: more than %d steps", ErrSchedule, 1<<24)
		}
		for ; n > 0; n-- {
			s = append(s, int8(c))
		}
	}
	return s, nil
}
