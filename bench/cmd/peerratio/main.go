// Command peerratio reads `go test -bench` output and prints, per benchmark,
// the ratio of the median of one variant to the median of another: by default
// ptlab over gVisor for BenchmarkPeer/<op>/impl=ptlab and .../impl=gvisor.
// Any other pair of sub-benchmark name components works too, e.g.
//
//	peerratio -num 1TiB -den 16GiB ramindep.txt
//
// With several runs of a benchmark (-count), the medians are compared.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	num := flag.String("num", "impl=ptlab", "name component of the numerator variant")
	den := flag.String("den", "impl=gvisor", "name component of the denominator variant")
	unit := flag.String("unit", "ns/op", "unit to compare")
	flag.Parse()
	var in io.Reader = os.Stdin
	if flag.NArg() > 0 {
		var rs []io.Reader
		for _, name := range flag.Args() {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, "peerratio:", err)
				os.Exit(1)
			}
			defer f.Close()
			rs = append(rs, f)
		}
		in = io.MultiReader(rs...)
	}
	rows, err := ratios(in, *num, *den, *unit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerratio:", err)
		os.Exit(1)
	}
	if err := write(os.Stdout, rows, *num, *den, *unit); err != nil {
		fmt.Fprintln(os.Stderr, "peerratio:", err)
		os.Exit(1)
	}
}

// errNoPairs says the input held no benchmark with both variants.
var errNoPairs = errors.New("no benchmark has both variants")

// row is one benchmark with both variants present.
type row struct {
	name                 string  // benchmark name without the variant component
	num, den             float64 // medians of the compared unit
	numAllocs, denAllocs float64 // medians of allocs/op, -1 when not reported
	n                    [2]int  // runs of each variant
}

// Ratio is num/den.
func (r row) Ratio() float64 { return r.num / r.den }

// ratios parses benchmark lines and pairs the variants.
func ratios(in io.Reader, num, den, unit string) ([]row, error) {
	type key struct{ name, unit string }
	vals := map[key]*[2][]float64{}
	var order []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for ln := 1; sc.Scan(); ln++ {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a log line that starts with "Benchmark"
		}
		name, side, ok := variant(trimProcs(f[0]), num, den)
		if !ok {
			continue
		}
		if !seen[name] {
			seen[name] = true
			order = append(order, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: value %q: %w", ln, f[i], err)
			}
			k := key{name, f[i+1]}
			if vals[k] == nil {
				vals[k] = new([2][]float64)
			}
			vals[k][side] = append(vals[k][side], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var rows []row
	for _, name := range order {
		v := vals[key{name, unit}]
		if v == nil || len(v[0]) == 0 || len(v[1]) == 0 {
			continue
		}
		r := row{name: name, num: median(v[0]), den: median(v[1]), numAllocs: -1, denAllocs: -1, n: [2]int{len(v[0]), len(v[1])}}
		if a := vals[key{name, "allocs/op"}]; a != nil && len(a[0]) > 0 && len(a[1]) > 0 {
			r.numAllocs, r.denAllocs = median(a[0]), median(a[1])
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w %q and %q in unit %s", errNoPairs, num, den, unit)
	}
	return rows, nil
}

// trimProcs removes the -GOMAXPROCS suffix of a benchmark name.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i == len(name)-1 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// variant finds the num (side 0) or den (side 1) component of a name and
// returns the name without it.
func variant(name, num, den string) (string, int, bool) {
	parts := strings.Split(name, "/")
	for i, p := range parts[1:] {
		side := -1
		switch p {
		case num:
			side = 0
		case den:
			side = 1
		}
		if side >= 0 {
			rest := slices.Delete(slices.Clone(parts), i+1, i+2)
			return strings.Join(rest, "/"), side, true
		}
	}
	return "", 0, false
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func write(w io.Writer, rows []row, num, den, unit string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	num, den = label(num), label(den)
	fmt.Fprintf(tw, "benchmark\t%s %s\t%s %s\t%s/%s\t%s allocs/op\t%s allocs/op\t\n", num, unit, den, unit, num, den, num, den)
	for _, r := range rows {
		mark := ""
		if r.Ratio() > 1 {
			mark = " (slower)"
		}
		fmt.Fprintf(tw, "%s\t%.4g\t%.4g\t%.2f%s\t%s\t%s\t\n", r.name, r.num, r.den, r.Ratio(), mark, allocs(r.numAllocs), allocs(r.denAllocs))
	}
	return tw.Flush()
}

// label is a variant's name for column headers: the value of a key=value
// component.
func label(v string) string {
	if _, after, ok := strings.Cut(v, "="); ok {
		return after
	}
	return v
}

func allocs(a float64) string {
	if a < 0 {
		return "-"
	}
	return strconv.FormatFloat(a, 'g', -1, 64)
}
