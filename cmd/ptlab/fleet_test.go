package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestFleetHelperProcess is ptlab itself when the test binary is started
// with PTLAB_FLEET_ARGS set (the subprocess of TestFleetShardsAsProcesses).
func TestFleetHelperProcess(t *testing.T) {
	args := os.Getenv("PTLAB_FLEET_ARGS")
	if args == "" {
		t.Skip("only as a subprocess")
	}
	rootCmd.SetArgs(strings.Split(args, "\x1f"))
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ptlab:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func ptlabProcess(t *testing.T, env []string, args ...string) *exec.Cmd {
	c := exec.Command(os.Args[0], "-test.run=^TestFleetHelperProcess$")
	c.Env = append(append(os.Environ(), env...), "PTLAB_FLEET_ARGS="+strings.Join(args, "\x1f"))
	return c
}

// N shards of "dump stats" run as separate processes at once, as the pods of
// the Kubernetes Indexed Job in deploy/k8s run them; "ptlab merge" of their
// results into Parquet, read back, gives byte for byte the unsharded JSON
// Lines result; a missing or duplicated shard makes merge fail.
func TestFleetShardsAsProcesses(t *testing.T) {
	dir := t.TempDir()
	dumps, _ := filepath.Glob("../../ptdump/testdata/*.txt")
	var list bytes.Buffer
	for _, d := range dumps {
		abs, _ := filepath.Abs(d)
		fmt.Fprintln(&list, abs)
	}
	fmt.Fprintln(&list, filepath.Join(dir, "gone.txt")) // a dump that vanished: an error row
	if err := os.WriteFile(filepath.Join(dir, "fleet.list"), list.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// The shards run as the Indexed Job in deploy/k8s runs them: its
	// container args with $(JOB_COMPLETION_INDEX) expanded, once per
	// completion index, all at once; /data and /out are directories here.
	var job struct {
		Spec struct {
			Completions int `yaml:"completions"`
			Template    struct {
				Spec struct {
					Containers []struct {
						Command []string `yaml:"command"`
						Args    []string `yaml:"args"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	manifest, err := os.ReadFile("../../deploy/k8s/ptlab-fleet-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(manifest, &job); err != nil {
		t.Fatal(err)
	}
	n := job.Spec.Completions
	ctr := job.Spec.Template.Spec.Containers[0]
	if n < 2 || len(ctr.Command) != 1 || ctr.Command[0] != "ptlab" {
		t.Fatalf("manifest: %d completions, command %v", n, ctr.Command)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	var procs []*exec.Cmd
	for i := range n {
		var args []string
		for _, a := range ctr.Args {
			a = strings.ReplaceAll(a, "$(JOB_COMPLETION_INDEX)", fmt.Sprint(i))
			a = strings.ReplaceAll(a, "/data/", dir+"/")
			args = append(args, strings.ReplaceAll(a, "/out/", out+"/"))
		}
		c := ptlabProcess(t, []string{fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i)}, args...)
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, c)
	}
	for _, c := range procs {
		if err := c.Wait(); err != nil {
			t.Fatalf("shard process: %v", err)
		}
	}
	whole, err := ptlabProcess(t, nil, "dump", "stats", "--lenient", "@"+filepath.Join(dir, "fleet.list")).Output()
	if err != nil {
		t.Fatal(err)
	}
	merged, err := ptlabProcess(t, nil, "merge", filepath.Join(out, "shard-*.jsonl"), "-o", filepath.Join(out, "fleet.parquet")).Output()
	if err != nil || len(merged) != 0 {
		t.Fatalf("merge to Parquet: %v %s", err, merged)
	}
	// and the Parquet result, merged again on its own, is the JSON Lines one
	merged, err = ptlabProcess(t, nil, "merge", filepath.Join(out, "fleet.parquet")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(whole, merged) || bytes.Count(whole, []byte("\n")) != len(dumps)+2 {
		t.Fatalf("merged (%d bytes) differs from unsharded (%d bytes)", len(merged), len(whole))
	}
	if err := os.Remove(filepath.Join(out, "shard-2.jsonl")); err != nil {
		t.Fatal(err)
	}
	mout, err := ptlabProcess(t, nil, "merge", filepath.Join(out, "shard-*.jsonl")).CombinedOutput()
	if err == nil || !strings.Contains(string(mout), fmt.Sprintf("missing shard(s) 2 of %d", n)) {
		t.Fatalf("merge without shard 2: %v %s", err, mout)
	}
	b, _ := os.ReadFile(filepath.Join(out, "shard-1.jsonl"))
	if err := os.WriteFile(filepath.Join(out, "shard-1-again.jsonl"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	mout, err = ptlabProcess(t, nil, "merge", filepath.Join(out, "shard-*.jsonl")).CombinedOutput()
	if err == nil || !strings.Contains(string(mout), fmt.Sprintf("shard 1/%d twice", n)) {
		t.Fatalf("merge with shard 1 twice: %v %s", err, mout)
	}
}
