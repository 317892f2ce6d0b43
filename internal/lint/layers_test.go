package lint

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/ptlab/ptlab/"

// layers ranks the packages as docs/design.md draws them: a package may
// import only ptlab packages of a lower rank, so imports point down and
// there is no way back up. Packages missing here (new ones) are reported
// but not judged: give them a rank.
var layers = map[string]int{
	"arm64":           0,
	"physmem":         0,
	"pgtable":         1,
	"ptdump":          1,
	"tlb":             2,
	"kernel":          2,
	"capture":         2,
	"ptdump/analysis": 2,
	"cpu":             3,
	"modscan":         3,
	"check":           4,
	"workload":        4,
	"explore":         5,
	"report":          5,
	"fleet":           5,
	"cmd/ptlab":       9,
}

type pkgImports struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listAll(t *testing.T) []pkgImports {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkgImports
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkgImports
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestImportsPointDown: no package imports one of its own layer or above.
func TestImportsPointDown(t *testing.T) {
	for _, p := range listAll(t) {
		name := strings.TrimPrefix(p.ImportPath, module)
		if strings.HasPrefix(name, "internal/") || strings.Contains(name, "/internal/") {
			continue // test helpers
		}
		rank, ok := layers[name]
		if !ok {
			t.Logf("%s has no layer in layers_test.go: not judged", name)
			continue
		}
		for _, imp := range p.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok || strings.Contains(dep, "internal/") {
				continue
			}
			if r, known := layers[dep]; known && r >= rank {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", name, rank, dep, r)
			}
		}
	}
}

// TestModelImportsNoImages: the model and the dump format do not pull in
// image or font packages (the heat map lives in ptdump/analysis).
func TestModelImportsNoImages(t *testing.T) {
	model := map[string]bool{"arm64": true, "physmem": true, "pgtable": true, "ptdump": true,
		"kernel": true, "cpu": true, "check": true, "explore": true, "workload": true, "capture": true, "modscan": true}
	for _, p := range listAll(t) {
		if !model[strings.TrimPrefix(p.ImportPath, module)] {
			continue
		}
		for _, d := range p.Deps {
			if d == "image" || strings.HasPrefix(d, "image/") || strings.HasPrefix(d, "golang.org/x/image") {
				t.Errorf("%s depends on %s", p.ImportPath, d)
			}
		}
	}
}
