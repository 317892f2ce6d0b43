package explore

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/ptlab/ptlab/check"
)

// Sharded searches. Shard i of N searches a deterministic part of the
// schedule space, so that N shards on N machines together search exactly
// what one search does, and MergeShards joins their results into the
// unsharded one. Every iteration (preemption bound) is cut as units.go cuts
// it: the iteration's first run (the root) names the level-one units, one
// per choice point of the root run; shard i takes those at depths d with
// d mod N = i, and shard 0 also counts the root. The bound-0 search is
// small and teaches every shard the load preemption points, so every shard
// runs it (shard 0 counts it). Random walk w belongs to shard w mod N.
// A shard's result lists its parts with their counts up to the first
// violation in each; the merge sums the parts of all shards in depth-first
// order up to the first violation, which gives the serial search's counts.

// ErrShard reports shard results that cannot be merged.
var ErrShard = errors.New("explore: bad shard results")

// ShardViolation is a violation and the schedule that reaches it.
type ShardViolation struct {
	check.Violation
	Schedule    string `json:"schedule"`
	Preemptions int    `json:"preemptions"`
}

func record(o *outcome) *ShardViolation {
	s := o.schedule
	if v := o.violation; v.Step >= 0 && v.Step+1 < len(s) {
		s = s[:v.Step+1]
	}
	return &ShardViolation{Violation: *o.violation, Schedule: s.String(), Preemptions: o.preemptions}
}

// ShardPart is one initial unit of an iteration: the root (Depth -1) or the
// level-one unit at a choice depth, counted up to its first violation.
type ShardPart struct {
	Depth     int             `json:"depth"`
	Runs      int             `json:"runs"`
	Schedules int             `json:"schedules"`
	Steps     int             `json:"steps"`
	Complete  bool            `json:"complete"` // every run of the part, or up to its violation
	Violation *ShardViolation `json:"violation,omitempty"`
}

// ShardLevel is one iteration's parts, in depth-first order.
type ShardLevel struct {
	Bound int         `json:"bound"`
	Parts []ShardPart `json:"parts"`
}

// ShardWalk is one random walk.
type ShardWalk struct {
	Index     int             `json:"index"`
	Steps     int             `json:"steps"`
	Violation *ShardViolation `json:"violation,omitempty"`
	viol      *outcome
}

// ShardResult is what one shard (or the merge of all) found for one
// scenario: the parts of every iteration it searched and its random walks,
// each list ending at the shard's first violation.
type ShardResult struct {
	Shard    Shard        `json:"shard"`
	Preset   string       `json:"preset"`
	Scenario string       `json:"scenario"`
	Bound    int          `json:"bound"`
	Points   string       `json:"points"`
	Random   int          `json:"random"`
	Seed     uint64       `json:"seed"`
	Levels   []ShardLevel `json:"levels"`
	Walks    []ShardWalk  `json:"walks"`
}

// RunShard searches shard sh's part (Shard{0, 1}: everything) with
// cfg.Jobs workers.
func (x *Explorer) RunShard(sh Shard) (*ShardResult, error) {
	if sh.Count < 1 || sh.Index < 0 || sh.Index >= sh.Count {
		return nil, fmt.Errorf("%w: shard %d of %d", ErrShard, sh.Index, sh.Count)
	}
	if x.cfg.MaxRuns > 0 {
		return nil, fmt.Errorf("%w: --max-runs cannot be sharded", ErrShard)
	}
	defer relaxGC()()
	defer x.kernels.drain()
	defer x.setups.drain()
	r := &ShardResult{Shard: sh, Preset: x.cfg.Preset, Scenario: x.cfg.Scenario.Name, Bound: x.cfg.Bound,
		Points: x.cfg.Points.String(), Random: x.cfg.Random, Seed: x.cfg.Seed, Levels: []ShardLevel{}, Walks: []ShardWalk{}}
	violated := false
	for b := 0; b <= x.cfg.Bound && !violated; b++ {
		lv := ShardLevel{Bound: b, Parts: []ShardPart{}}
		var parts []ShardPart
		if b == 0 {
			x.learn = true
			p := ShardPart{Depth: -1, Complete: true}
			d := &dfsChooser{bound: 0, points: x.cfg.Points}
			for {
				d.depth = 0
				o, err := x.run(d, nil)
				if err != nil {
					return nil, err
				}
				p.Runs++
				p.Steps += o.steps
				if o.preemptions == 0 {
					p.Schedules++
				}
				if o.violation != nil {
					p.Violation = record(o)
					break
				}
				if !d.next() {
					break
				}
			}
			x.learn = false
			parts, violated = []ShardPart{p}, p.Violation != nil
		} else {
			res, err := x.searchLevel(b, x.cfg.Jobs, sh, nil)
			if err != nil {
				return nil, err
			}
			parts, violated = res.parts, res.viol != nil
		}
		for _, p := range parts {
			if p.Depth >= 0 || sh.Index == 0 { // shard 0 counts the root
				lv.Parts = append(lv.Parts, p)
			}
		}
		r.Levels = append(r.Levels, lv)
	}
	if !violated && x.cfg.Random > 0 {
		ws, err := x.walks(x.cfg.Random, x.cfg.Jobs, sh)
		if err != nil {
			return nil, err
		}
		r.Walks = ws
	}
	return r, nil
}

// partOrder is depth-first order: the root, then deeper choice points first.
func partOrder(a, b ShardPart) int {
	if a.Depth < 0 || b.Depth < 0 {
		return cmp.Compare(a.Depth, b.Depth)
	}
	return cmp.Compare(b.Depth, a.Depth)
}

// MergeShards joins the results of shards 0..N-1 of one search of one
// scenario into the result the unsharded search (shard 0 of 1) returns.
func MergeShards(rs []*ShardResult) (*ShardResult, error) {
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: nothing to merge", ErrShard)
	}
	r0 := rs[0]
	m := &ShardResult{Shard: Shard{0, 1}, Preset: r0.Preset, Scenario: r0.Scenario, Bound: r0.Bound, Points: r0.Points,
		Random: r0.Random, Seed: r0.Seed, Levels: []ShardLevel{}, Walks: []ShardWalk{}}
	for _, r := range rs[1:] {
		if r.Preset != r0.Preset || r.Scenario != r0.Scenario || r.Bound != r0.Bound || r.Points != r0.Points ||
			r.Random != r0.Random || r.Seed != r0.Seed {
			return nil, fmt.Errorf("%w: %s/%s and %s/%s are not one search", ErrShard, r.Preset, r.Scenario, r0.Preset, r0.Scenario)
		}
	}
	seen := make([]bool, r0.Shard.Count)
	for _, r := range rs {
		switch {
		case r.Shard.Count != r0.Shard.Count || r.Shard.Index < 0 || r.Shard.Index >= r.Shard.Count:
			return nil, fmt.Errorf("%w: %s: shard %d/%d among shards of %d", ErrShard, r.Scenario, r.Shard.Index, r.Shard.Count, r0.Shard.Count)
		case seen[r.Shard.Index]:
			return nil, fmt.Errorf("%w: %s: shard %d/%d twice", ErrShard, r.Scenario, r.Shard.Index, r.Shard.Count)
		}
		seen[r.Shard.Index] = true
	}
	if i := slices.Index(seen, false); i >= 0 {
		return nil, fmt.Errorf("%w: %s: shard %d/%d missing", ErrShard, r0.Scenario, i, r0.Shard.Count)
	}
	violated := false
	for b := 0; b <= r0.Bound && !violated; b++ {
		var parts []ShardPart
		for _, r := range rs {
			for _, l := range r.Levels {
				if l.Bound == b {
					parts = append(parts, l.Parts...)
				}
			}
		}
		slices.SortStableFunc(parts, partOrder)
		lv := ShardLevel{Bound: b, Parts: []ShardPart{}}
		for i, p := range parts {
			if i > 0 && parts[i-1].Depth == p.Depth {
				return nil, fmt.Errorf("%w: bound %d: part at depth %d twice", ErrShard, b, p.Depth)
			}
			if !p.Complete {
				return nil, fmt.Errorf("%w: bound %d: part at depth %d is incomplete before the first violation", ErrShard, b, p.Depth)
			}
			lv.Parts = append(lv.Parts, p)
			if p.Violation != nil {
				violated = true
				break
			}
		}
		if len(lv.Parts) == 0 || lv.Parts[0].Depth != -1 {
			return nil, fmt.Errorf("%w: bound %d: no shard 0 among the results", ErrShard, b)
		}
		m.Levels = append(m.Levels, lv)
	}
	if !violated && r0.Random > 0 {
		var ws []ShardWalk
		for _, r := range rs {
			ws = append(ws, r.Walks...)
		}
		slices.SortFunc(ws, func(a, b ShardWalk) int { return cmp.Compare(a.Index, b.Index) })
		for i, w := range ws {
			if w.Index != i {
				return nil, fmt.Errorf("%w: random walk %d missing", ErrShard, i)
			}
			m.Walks = append(m.Walks, w)
			if w.Violation != nil {
				break
			}
		}
		if n := len(m.Walks); n < r0.Random && (n == 0 || m.Walks[n-1].Violation == nil) {
			return nil, fmt.Errorf("%w: random walks %d.. missing", ErrShard, n)
		}
	}
	return m, nil
}

// Result is the search result a merged (or unsharded) ShardResult stands
// for: the counts and first violation Explorer.Run reports.
func (r *ShardResult) Result() (*Result, error) {
	pts, err := ParsePoints(r.Points)
	if err != nil {
		return nil, err
	}
	res := &Result{Preset: r.Preset, Scenario: r.Scenario, Bound: r.Bound, Points: pts}
	var v *ShardViolation
	for _, l := range r.Levels {
		for _, p := range l.Parts {
			res.Runs += p.Runs
			res.Schedules += p.Schedules
			res.Steps += p.Steps
			if p.Violation != nil && v == nil {
				v = p.Violation
			}
		}
	}
	res.Exhaustive = v == nil && r.Bound >= 0
	for _, w := range r.Walks {
		res.Runs++
		res.Schedules++
		res.Steps += w.Steps
		if w.Violation != nil && v == nil {
			v, res.Random = w.Violation, true
		}
	}
	if v != nil {
		viol := v.Violation
		res.Violation = &viol
		res.Preemptions = v.Preemptions
		if res.Schedule, err = ParseSchedule(v.Schedule); err != nil {
			return nil, err
		}
	}
	return res, nil
}
