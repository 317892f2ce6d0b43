package lint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// modelPackages are the packages whose errors are the model's own: a
// discarded error there hides corruption of the model.
var modelPackages = []string{"physmem", "pgtable", "kernel", "cpu", "explore", "check", "workload"}

// listed is what `go list -export -json` says about one package.
type listed struct {
	ImportPath string
	Dir        string
	Export     string
	GoFiles    []string
	Standard   bool
}

// goList lists the model packages and every dependency with its export data
// file (built by go list, cached by the go command).
func goList(t *testing.T, root string) (targets []listed, export map[string]string) {
	t.Helper()
	args := []string{"list", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles,Standard"}
	for _, p := range modelPackages {
		args = append(args, "./"+p)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	want := map[string]bool{}
	for _, p := range modelPackages {
		want["github.com/ptlab/ptlab/"+p] = true
	}
	export = map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		export[p.ImportPath] = p.Export
		if want[p.ImportPath] {
			targets = append(targets, p)
		}
	}
	return targets, export
}

// blankErrors returns, for one type-checked file, every blank identifier
// that receives an error-typed value: `_ = f()`, `_, _ = g()`, `v, _ := h()`,
// `var _ = f()`.
func blankErrors(fset *token.FileSet, f *ast.File, info *types.Info) []string {
	errType := types.Universe.Lookup("error").Type().Underlying().(*types.Interface)
	isErr := func(t types.Type) bool {
		return t != nil && types.Implements(t, errType) && !types.IsInterface(t.Underlying()) || (t != nil && types.Identical(t, types.Universe.Lookup("error").Type()))
	}
	var found []string
	check := func(lhs []ast.Expr, rhs []ast.Expr) {
		for i, l := range lhs {
			id, ok := l.(*ast.Ident)
			if !ok || id.Name != "_" {
				continue
			}
			var t types.Type
			switch {
			case len(lhs) == len(rhs):
				t = info.TypeOf(rhs[i])
			case len(rhs) == 1:
				if tup, ok := info.TypeOf(rhs[0]).(*types.Tuple); ok && i < tup.Len() {
					t = tup.At(i).Type()
				}
			}
			if isErr(t) {
				found = append(found, fmt.Sprintf("%s: error discarded with _", fset.Position(id.Pos())))
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			check(n.Lhs, n.Rhs)
		case *ast.ValueSpec:
			lhs := make([]ast.Expr, len(n.Names))
			for i, id := range n.Names {
				lhs[i] = id
			}
			if len(n.Values) > 0 {
				check(lhs, n.Values)
			}
		}
		return true
	})
	return found
}

// TestNoBlankErrorsInModel: no model package discards an error into the
// blank identifier. A model that hides its own failures cannot be trusted:
// handle the error, return it, or record it (kernel: modelError for what
// only a broken model can produce, kernelIgnores where the kernel itself
// drops the error).
func TestNoBlankErrorsInModel(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	targets, export := goList(t, root)
	if len(targets) != len(modelPackages) {
		t.Fatalf("listed %d of %d model packages", len(targets), len(modelPackages))
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := export[path]
		if !ok || f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	var found []string
	for _, p := range targets {
		var files []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
		conf := types.Config{Importer: imp}
		if _, err := conf.Check(p.ImportPath, fset, files, info); err != nil {
			t.Fatalf("type-checking %s: %v", p.ImportPath, err)
		}
		for _, f := range files {
			found = append(found, blankErrors(fset, f, info)...)
		}
	}
	sort.Strings(found)
	for _, s := range found {
		rel, _ := filepath.Rel(root, strings.SplitN(s, ":", 2)[0])
		t.Errorf("%s%s", rel, strings.TrimPrefix(s, strings.SplitN(s, ":", 2)[0]))
	}
}
