package explore

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

// N shards of a search, merged, are the unsharded search: the same result
// as Explorer.Run (counts, first violation, schedule), and the same
// ShardResult, byte for byte, as shard 0 of 1 — with a violation at the
// root, deep in an iteration, in random walks, or none. Under the race
// detector the large search without a violation (collapse neighbours, 60%
// of the test) is left to the run without -race; two-vmalloc keeps a case
// without one.
func TestShardsMergeToSerial(t *testing.T) {
	type tc struct {
		preset, scenario, mut string
		bound, random         int
	}
	cases := []tc{
		{"rfc-v1", "neighbours", "", 2, 0},
		{"collapse", "split", "no-split-lock", 2, 0},
		{"collapse", "neighbours", "", 1, 0},
		{"collapse", "two-vmalloc", "", 1, 5},
		{"rfc-v1", "neighbours", "", -1, 30},
		{"collapse", "bpf-pack", "skip-tlbi", 1, 0},
	}
	for _, c := range cases {
		if raceDetector && c.preset == "collapse" && c.scenario == "neighbours" {
			continue
		}
		muts, err := LookupMutant(c.mut)
		if err != nil {
			t.Fatal(err)
		}
		sc, _ := LookupScenario(c.scenario)
		cfg := Config{Preset: c.preset, Scenario: sc, Mutations: muts, Bound: c.bound, Random: c.random, Seed: 5, Jobs: 2}
		x, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		serial, err := x.Run()
		if err != nil {
			t.Fatal(err)
		}
		want := resultText(serial)
		one, err := x.RunShard(Shard{0, 1})
		if err != nil {
			t.Fatal(err)
		}
		oneJSON, _ := json.Marshal(one)
		for _, n := range []int{1, 2, 3} {
			var rs []*ShardResult
			for i := n - 1; i >= 0; i-- { // any order
				x, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				r, err := x.RunShard(Shard{i, n})
				if err != nil {
					t.Fatal(err)
				}
				// Through JSON, as shards on other machines hand them over.
				b, _ := json.Marshal(r)
				var back ShardResult
				if err := json.Unmarshal(b, &back); err != nil {
					t.Fatal(err)
				}
				rs = append(rs, &back)
			}
			m, err := MergeShards(rs)
			if err != nil {
				t.Fatalf("%+v, %d shards: %v", c, n, err)
			}
			res, err := m.Result()
			if err != nil {
				t.Fatal(err)
			}
			res.Elapsed = serial.Elapsed
			if got := resultText(res); got != want {
				t.Errorf("%+v, %d shards merged:\n got %s\nwant %s", c, n, got, want)
			}
			if mj, _ := json.Marshal(m); string(mj) != string(oneJSON) {
				t.Errorf("%+v, %d shards merged differ from shard 0 of 1:\n%s\n%s", c, n, mj, oneJSON)
			}
			if n > 1 {
				if _, err := MergeShards(rs[1:]); err == nil {
					t.Errorf("%+v: a missing shard merged without error", c)
				}
			}
		}
	}
}

// On synthetic trees of every shape, the parts of N shards of an iteration,
// put in depth-first order and summed up to the first violation, are the
// serial search of the iteration.
func TestShardPartsEqualSerial(t *testing.T) {
	for seed := uint64(0); seed < 120; seed++ {
		run := fakeRun(seed, []uint64{0, 3, 40, 400}[seed%4])
		for b := 1; b <= 3; b++ {
			want := serialLevel(run, b)
			for n := 1; n <= 4; n++ {
				var parts []ShardPart
				for i := range n {
					lv, err := searchTree(run, b, PointsShared, 1+i%2, Shard{i, n}, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, p := range lv.parts {
						if p.Depth >= 0 || i == 0 {
							parts = append(parts, p)
						}
					}
				}
				slices.SortStableFunc(parts, partOrder)
				runs, sched, steps := 0, 0, 0
				var v *ShardViolation
				for _, p := range parts {
					runs, sched, steps = runs+p.Runs, sched+p.Schedules, steps+p.Steps
					if p.Violation != nil {
						v = p.Violation
						break
					}
				}
				got := fmt.Sprintf("%d runs %d schedules %d steps", runs, sched, steps)
				if v != nil {
					s, _ := ParseSchedule(v.Schedule)
					got += fmt.Sprintf("; %s at %v", v.Msg, s)
				}
				if got != want {
					t.Fatalf("tree %d bound %d, %d shards:\n got %s\nwant %s", seed, b, n, got, want)
				}
			}
		}
	}
}
