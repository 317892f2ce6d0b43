package main

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// ptlab check finds the review's race under rfc-v1, prints a schedule that
// replays to the same violation, and is deterministic.
func TestCheckFindsRFCv1Race(t *testing.T) {
	out, err := run(t, "check", "--preset", "rfc-v1", "--scenario", "neighbours")
	if !errors.Is(err, errViolations) {
		t.Fatalf("want a violation error, got %v", err)
	}
	for _, want := range []string{"VIOLATION", "1 preemption", "table freed under walker", "tryCollapseKernelPMD", "--- preemption to CPU1", "(freed)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	again, _ := run(t, "check", "--preset", "rfc-v1", "--scenario", "neighbours")
	if again != out {
		t.Error("two runs differ")
	}
	m := regexp.MustCompile(`--replay "([^"]+)"`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no replay command")
	}
	rep, err := run(t, "check", "--preset", "rfc-v1", "--scenario", "neighbours", "--replay", m[1])
	if !errors.Is(err, errViolations) || !strings.Contains(rep, "VIOLATION at step") || !strings.Contains(rep, "table freed under walker") {
		t.Errorf("replay: %v\n%s", err, rep)
	}
}

func TestCheckCollapseClean(t *testing.T) {
	out, err := run(t, "check", "--preset", "collapse", "--scenario", "neighbours", "--bound", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`no violation in \d+ behaviours \(bound 1, exhaustive`).MatchString(out) {
		t.Errorf("output: %s", out)
	}
	out, err = run(t, "check", "--preset", "collapse", "--scenario", "split", "--mutant", "no-split-lock", "--bound", "1")
	if !errors.Is(err, errViolations) || !strings.Contains(out, "VIOLATION") || !strings.Contains(out, "--mutant no-split-lock") {
		t.Errorf("mutant: %v\n%s", err, out)
	}
}

func TestCheckErrors(t *testing.T) {
	for _, args := range [][]string{
		{"check", "--scenario", "nope"},
		{"check", "--preset", "nope"},
		{"check", "--mutant", "nope"},
		{"check", "--points", "some"},
		{"check", "--scenario", "neighbours", "--replay", "0xq"},
		{"check", "--replay", "0x1"},
		{"check", "--scenario", "neighbours", "--preset", "collapse", "--replay", "0x2 1x5"},
	} {
		if _, err := run(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// ptlab check --mutants prints every mutant as caught and exits zero.
func TestCheckMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every mutant")
	}
	out, err := run(t, "check", "--mutants", "--bound", "1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"fold-skips-last-pte", "chunk-offsets", "repaint-without-flush", "not caught: equivalent", "mutants caught"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// --jobs explores scenarios at once and prints exactly what a serial run
// prints.
func TestCheckJobsSameOutput(t *testing.T) {
	one, err1 := run(t, "check", "--preset", "rfc-v1", "--bound", "0", "--jobs", "1")
	two, err2 := run(t, "check", "--preset", "rfc-v1", "--bound", "0", "--jobs", "3")
	if (err1 == nil) != (err2 == nil) || one != two {
		t.Fatalf("--jobs 1 (%v):\n%s\n--jobs 3 (%v):\n%s", err1, one, err2, two)
	}
	if !strings.Contains(one, "over 17 scenarios") {
		t.Errorf("not every scenario ran:\n%s", one)
	}
}
