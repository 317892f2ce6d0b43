// Package fleet runs ptlab's per-item analyses beyond one machine: a list of
// inputs (a fleet's dumps, or a checker's schedule space) is cut into N
// shards, each shard runs anywhere (a process, a pod of a Kubernetes Indexed
// Job) and writes a self-describing result, and Merge combines the N results
// into the one the unsharded run would have written, refusing results that
// do not belong together.
//
// A result is an envelope followed by rows. In JSON Lines the envelope is the
// first line and every row a line after it; every line has a "record" field
// ("envelope" or the row kind) so data engines can filter rows. In Parquet
// the rows are the file's rows and the envelope is the file's key-value
// metadata under EnvelopeKey.
package fleet

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Errors of sharding and merging; every error wraps one of them.
var (
	ErrShard    = errors.New("fleet: bad shard")
	ErrMismatch = errors.New("fleet: shard results do not belong together")
	ErrResult   = errors.New("fleet: malformed result")
)

// Schema names the envelope format; SchemaVersion changes whenever a field's
// meaning changes. Readers refuse other versions.
const (
	Schema        = "ptlab.fleet.result"
	SchemaVersion = 1
	// EnvelopeKey is the Parquet key-value metadata key holding the envelope.
	EnvelopeKey = "ptlab.envelope"
)

// Shard is shard Index of Count (0 ≤ Index < Count); the unsharded run and a
// merged result are shard 0 of 1.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// ParseShard reads "i/N". i counts from 0, as a Kubernetes Indexed Job's
// JOB_COMPLETION_INDEX does.
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("%w: %q: want i/N with 0 <= i < N", ErrShard, s)
	}
	return Shard{i, n}, nil
}

// Range is the part [lo, hi) of n items this shard takes: contiguous
// blocks, so concatenating the shards' rows in shard order gives the rows in
// input order.
func (s Shard) Range(n int) (lo, hi int) {
	return s.Index * n / s.Count, (s.Index + 1) * n / s.Count
}

// Inputs identifies the whole input list (not just this shard's part): its
// length and the SHA-256 of the items, one per line, in order.
type Inputs struct {
	Count  int    `json:"count"`
	SHA256 string `json:"sha256"`
}

// Tool is the program that wrote a result.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Envelope describes a result: what produced it, over which inputs, which
// part of them, and how many rows follow.
type Envelope struct {
	Record        string `json:"record"` // "envelope"
	Schema        string `json:"schema"`
	SchemaVersion int    `json:"schema_version"`
	// Kind names the analysis and the row type ("dump-stats"; the checker's
	// "check").
	Kind  string `json:"kind"`
	Shard Shard  `json:"shard"`
	// Range is the slice [lo, hi) of the inputs whose rows this result
	// holds.
	Range  [2]int `json:"range"`
	Inputs Inputs `json:"inputs"`
	// Options are the settings that change rows (e.g. lenient parsing);
	// results merge only with equal options.
	Options map[string]string `json:"options"`
	Tool    Tool              `json:"tool"`
	Rows    int               `json:"rows"`
}

// NewEnvelope is the envelope of shard s of a run of kind over inputs.
func NewEnvelope(kind string, s Shard, in Inputs, options map[string]string) Envelope {
	lo, hi := s.Range(in.Count)
	if options == nil {
		options = map[string]string{}
	}
	return Envelope{Record: "envelope", Schema: Schema, SchemaVersion: SchemaVersion, Kind: kind,
		Shard: s, Range: [2]int{lo, hi}, Inputs: in, Options: options, Tool: ThisTool()}
}

// Version is the version of the program writing results (the CLI sets it
// to "ptlab --version"'s text); results of different versions do not merge.
var Version = "unknown"

// ThisTool is the program writing results.
func ThisTool() Tool { return Tool{Name: "ptlab", Version: Version} }

// check reports what is wrong with an envelope read from name.
func (e *Envelope) check(name string) error {
	switch {
	case e.Record != "envelope" || e.Schema != Schema:
		return fmt.Errorf("%w: %s: not a ptlab result (record %q, schema %q)", ErrResult, name, e.Record, e.Schema)
	case e.SchemaVersion != SchemaVersion:
		return fmt.Errorf("%w: %s: schema version %d, this ptlab reads %d", ErrMismatch, name, e.SchemaVersion, SchemaVersion)
	case e.Shard.Count < 1 || e.Shard.Index < 0 || e.Shard.Index >= e.Shard.Count:
		return fmt.Errorf("%w: %s: shard %s", ErrResult, name, e.Shard)
	}
	if lo, hi := e.Shard.Range(e.Inputs.Count); e.Range != [2]int{lo, hi} {
		return fmt.Errorf("%w: %s: range %v, shard %s of %d inputs takes [%d, %d)", ErrResult, name, e.Range, e.Shard, e.Inputs.Count, lo, hi)
	}
	return nil
}

// Result is an envelope and its rows, each row one JSON object.
type Result struct {
	Name     string // where it was read from, for errors
	Envelope Envelope
	Rows     []json.RawMessage
}

// Combiner joins the rows of shards 0..N-1, in shard order, into the rows of
// the unsharded run. Rows of kinds without one are concatenated.
type Combiner func(shards [][]json.RawMessage) ([]json.RawMessage, error)

var combiners = map[string]Combiner{}

// RegisterCombiner sets how results of kind merge (for kinds whose rows are
// not simply one per input, such as a checker's first violation).
func RegisterCombiner(kind string, c Combiner) { combiners[kind] = c }

// Merge checks that results are the N shards of one run — same schema, kind,
// tool version, options and input list, every shard index of N exactly once
// — and returns the result the unsharded run would have produced (shard 0 of
// 1). Any mismatch is an error naming the results involved.
func Merge(results []*Result) (*Result, error) {
	if len(results) == 0 {
		return nil, fmt.Errorf("%w: no results to merge", ErrShard)
	}
	for _, r := range results {
		if err := r.Envelope.check(r.Name); err != nil {
			return nil, err
		}
		if len(r.Rows) != r.Envelope.Rows {
			return nil, fmt.Errorf("%w: %s: envelope says %d rows, %d follow (truncated?)", ErrResult, r.Name, r.Envelope.Rows, len(r.Rows))
		}
	}
	first := results[0]
	e0 := first.Envelope
	for _, r := range results[1:] {
		e := r.Envelope
		var what string
		switch {
		case e.Kind != e0.Kind:
			what = fmt.Sprintf("kind %q vs %q", e.Kind, e0.Kind)
		case e.Tool != e0.Tool:
			what = fmt.Sprintf("tool %s %s vs %s %s", e.Tool.Name, e.Tool.Version, e0.Tool.Name, e0.Tool.Version)
		case e.Shard.Count != e0.Shard.Count:
			what = fmt.Sprintf("shard %s vs %s: different shard counts", e.Shard, e0.Shard)
		case e.Inputs != e0.Inputs:
			what = fmt.Sprintf("input lists differ (%d inputs, sha256 %.12s vs %d inputs, sha256 %.12s)", e.Inputs.Count, e.Inputs.SHA256, e0.Inputs.Count, e0.Inputs.SHA256)
		case !equalOptions(e.Options, e0.Options):
			what = fmt.Sprintf("options %v vs %v", e.Options, e0.Options)
		}
		if what != "" {
			return nil, fmt.Errorf("%w: %s and %s: %s", ErrMismatch, r.Name, first.Name, what)
		}
	}
	n := e0.Shard.Count
	byIndex := make([]*Result, n)
	for _, r := range results {
		i := r.Envelope.Shard.Index
		if byIndex[i] != nil {
			return nil, fmt.Errorf("%w: shard %s twice: %s and %s", ErrShard, r.Envelope.Shard, byIndex[i].Name, r.Name)
		}
		byIndex[i] = r
	}
	var missing []string
	for i, r := range byIndex {
		if r == nil {
			missing = append(missing, strconv.Itoa(i))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing shard(s) %s of %d", ErrShard, strings.Join(missing, ", "), n)
	}
	parts := make([][]json.RawMessage, n)
	for i, r := range byIndex {
		parts[i] = r.Rows
	}
	var rows []json.RawMessage
	if c := combiners[e0.Kind]; c != nil {
		var err error
		if rows, err = c(parts); err != nil {
			return nil, err
		}
	} else {
		for _, p := range parts {
			rows = append(rows, p...)
		}
	}
	env := NewEnvelope(e0.Kind, Shard{0, 1}, e0.Inputs, e0.Options)
	env.Tool = e0.Tool
	env.Rows = len(rows)
	return &Result{Name: "merged", Envelope: env, Rows: rows}, nil
}

func equalOptions(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// WriteJSONL writes a result as JSON Lines: the envelope, then one row a
// line.
func WriteJSONL(w io.Writer, r *Result) error {
	b, err := json.Marshal(r.Envelope)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.Write(b)
	bw.WriteByte('\n')
	for _, row := range r.Rows {
		bw.Write(row)
		bw.WriteByte('\n')
	}
	return bw.Flush() // a bufio.Writer keeps its first error
}

// ReadJSONL reads a result written by WriteJSONL.
func ReadJSONL(data []byte, name string) (*Result, error) {
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) == 0 || len(lines[0]) == 0 {
		return nil, fmt.Errorf("%w: %s: empty", ErrResult, name)
	}
	r := &Result{Name: name}
	dec := json.NewDecoder(bytes.NewReader(lines[0]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r.Envelope); err != nil {
		return nil, fmt.Errorf("%w: %s:1: envelope: %v", ErrResult, name, err)
	}
	for i, l := range lines[1:] {
		if t := bytes.TrimSpace(l); len(t) == 0 || t[0] != '{' || !json.Valid(t) {
			return nil, fmt.Errorf("%w: %s:%d: not a JSON object", ErrResult, name, i+2)
		}
		r.Rows = append(r.Rows, json.RawMessage(l))
	}
	return r, nil
}
