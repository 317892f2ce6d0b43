package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ptlab/ptlab/explore"
	"github.com/ptlab/ptlab/fleet"
)

// ptlab check --shard i/N writes one shard of a search as a fleet result
// (kind "check", JSON Lines): the envelope, then one row per scenario with
// the parts of the schedule space the shard searched (explore.RunShard).
// ptlab merge joins the N results into what --shard 0/1 writes, and
// ptlab check --from MERGED prints the report the unsharded search prints.
//
// A check has no input list: every shard searches part of every scenario,
// so inputs.count is 0 (the range [0, 0)) and inputs.sha256 names the
// search (preset, scenarios, bound, points, mutant, random walks, seed),
// which ptlab merge requires to be the same in every shard.

const checkKind = "check"

func init() { fleet.RegisterCombiner(checkKind, combineCheck) }

func shardFlags(fl *pflag.FlagSet, f *checkFlags) {
	fl.StringVar(&f.shard, "shard", "", `search only shard i of N of every scenario's schedules ("i/N", i from 0 as JOB_COMPLETION_INDEX) and write a result for "ptlab merge"`)
	fl.StringVarP(&f.output, "output", "o", "", "with --shard: write the result here (JSON Lines; default stdout)")
	fl.StringVar(&f.from, "from", "", "print the report of a search from its result (a merged or --shard 0/1 result) instead of searching")
}

// checkRow is a result row.
type checkRow struct {
	Record string `json:"record"`
	*explore.ShardResult
}

func checkOptions(f checkFlags, names []string) map[string]string {
	return map[string]string{"preset": f.preset, "scenarios": strings.Join(names, ","), "bound": strconv.Itoa(f.bound),
		"points": f.points, "mutant": f.mutant, "random": strconv.Itoa(f.random), "seed": strconv.FormatUint(f.seed, 10)}
}

func checkInputs(opts map[string]string) fleet.Inputs {
	h := sha256.New()
	for _, k := range []string{"preset", "scenarios", "bound", "points", "mutant", "random", "seed"} {
		fmt.Fprintf(h, "%s=%s\n", k, opts[k])
	}
	return fleet.Inputs{Count: 0, SHA256: hex.EncodeToString(h.Sum(nil))}
}

func runCheckShard(out io.Writer, f checkFlags) error {
	fs, err := fleet.ParseShard(f.shard)
	if err != nil {
		return err
	}
	if f.replay != "" || f.mutants || f.from != "" || f.maxRuns > 0 {
		return fmt.Errorf("%w: --shard searches; it does not go with --replay, --mutants, --from or --max-runs", explore.ErrScenario)
	}
	points, err := explore.ParsePoints(f.points)
	if err != nil {
		return err
	}
	muts, err := explore.LookupMutant(f.mutant)
	if err != nil {
		return err
	}
	names := []string{f.scenario}
	if f.scenario == "all" {
		names = explore.ScenarioNames()
	}
	opts := checkOptions(f, names)
	fleet.Version = rootCmd.Version
	env := fleet.NewEnvelope(checkKind, fs, checkInputs(opts), opts)
	res := &fleet.Result{Name: f.output, Envelope: env}
	sem := make(chan struct{}, max(f.jobs, 1))
	for _, name := range names {
		sc, err := explore.LookupScenario(name)
		if err != nil {
			return err
		}
		x, err := explore.New(explore.Config{Preset: f.preset, Scenario: sc, Mutations: muts, Bound: f.bound,
			Random: f.random, Seed: f.seed, Points: points, Jobs: f.jobs, Sem: sem})
		if err != nil {
			return err
		}
		r, err := x.RunShard(explore.Shard{Index: fs.Index, Count: fs.Count})
		if err != nil {
			return err
		}
		row, err := json.Marshal(checkRow{Record: checkKind, ShardResult: r})
		if err != nil {
			return err
		}
		res.Rows = append(res.Rows, row)
	}
	res.Envelope.Rows = len(res.Rows)
	if f.output == "" || f.output == "-" {
		return fleet.WriteJSONL(out, res)
	}
	if strings.HasSuffix(f.output, ".parquet") {
		return fmt.Errorf("%w: check results are JSON Lines (nested parts), not Parquet", explore.ErrScenario)
	}
	return fleet.WriteResult(f.output, res)
}

// combineCheck merges the shards' rows scenario by scenario
// (explore.MergeShards).
func combineCheck(shards [][]json.RawMessage) ([]json.RawMessage, error) {
	var order []string
	by := map[string][]*explore.ShardResult{}
	for _, rows := range shards {
		for _, raw := range rows {
			var r checkRow
			if err := json.Unmarshal(raw, &r); err != nil || r.ShardResult == nil || r.Record != checkKind {
				return nil, fmt.Errorf("%w: not a check row: %.80s", fleet.ErrResult, raw)
			}
			if _, ok := by[r.Scenario]; !ok {
				order = append(order, r.Scenario)
			}
			by[r.Scenario] = append(by[r.Scenario], r.ShardResult)
		}
	}
	var out []json.RawMessage
	for _, name := range order {
		m, err := explore.MergeShards(by[name])
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(checkRow{Record: checkKind, ShardResult: m})
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// readCheckResult reads an unsharded (merged or 0/1) check result.
func readCheckResult(path string) (*fleet.Result, []*explore.ShardResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	r, err := fleet.ReadJSONL(data, path)
	if err != nil {
		return nil, nil, err
	}
	if r.Envelope.Kind != checkKind || r.Envelope.Shard.Count != 1 {
		return nil, nil, fmt.Errorf("%w: %s: a %q result of shard %s, want a merged check result (ptlab merge)", fleet.ErrMismatch, path, r.Envelope.Kind, r.Envelope.Shard)
	}
	var srs []*explore.ShardResult
	for i, raw := range r.Rows {
		var row checkRow
		if err := json.Unmarshal(raw, &row); err != nil || row.ShardResult == nil {
			return nil, nil, fmt.Errorf("%w: %s:%d: not a check row", fleet.ErrResult, path, i+2)
		}
		srs = append(srs, row.ShardResult)
	}
	return r, srs, nil
}

// flagsFromResult takes the search's settings from the result --from names.
func flagsFromResult(f checkFlags) (checkFlags, error) {
	r, _, err := readCheckResult(f.from)
	if err != nil {
		return f, err
	}
	o := r.Envelope.Options
	f.preset, f.points, f.mutant = o["preset"], o["points"], o["mutant"]
	f.reduce = false // a sharded search runs every schedule
	if names := strings.Split(o["scenarios"], ","); len(names) == 1 {
		f.scenario = names[0]
	} else {
		f.scenario = "all"
	}
	if f.bound, err = strconv.Atoi(o["bound"]); err == nil {
		if f.random, err = strconv.Atoi(o["random"]); err == nil {
			f.seed, err = strconv.ParseUint(o["seed"], 10, 64)
		}
	}
	if err != nil {
		return f, fmt.Errorf("%w: %s: options %v", fleet.ErrResult, f.from, o)
	}
	return f, nil
}

// checkRuns searches the scenarios, or with --from reads what a search found.
func checkRuns(names []string, cfg func(*explore.Scenario) explore.Config, f checkFlags) ([]explore.ScenarioRun, error) {
	if f.from == "" {
		return explore.RunScenarios(names, cfg, f.jobs)
	}
	_, srs, err := readCheckResult(f.from)
	if err != nil {
		return nil, err
	}
	if len(srs) != len(names) {
		return nil, fmt.Errorf("%w: %s: %d rows for %d scenarios", fleet.ErrResult, f.from, len(srs), len(names))
	}
	var runs []explore.ScenarioRun
	for i, name := range names {
		sc, err := explore.LookupScenario(name)
		if err != nil {
			return nil, err
		}
		if srs[i].Scenario != name {
			return nil, fmt.Errorf("%w: %s: row %d is scenario %s, want %s", fleet.ErrResult, f.from, i+1, srs[i].Scenario, name)
		}
		x, err := explore.New(cfg(sc)) // for the replay of a violation
		if err != nil {
			return nil, err
		}
		res, err := srs[i].Result()
		if err != nil {
			return nil, err
		}
		runs = append(runs, explore.ScenarioRun{Scenario: sc, X: x, Res: res})
	}
	return runs, nil
}
