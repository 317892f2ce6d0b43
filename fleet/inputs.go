package fleet

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrInputs reports an input argument that names nothing.
var ErrInputs = errors.New("fleet: bad input list")

// ResolveInputs turns arguments into the sorted, duplicate-free list of input
// files: a directory stands for every regular file under it; an argument with
// glob characters (* ? [) for its matches; "@FILE" for the paths listed in
// FILE, one a line ("#" starts a comment; relative paths are relative to
// FILE's directory); anything else for itself. Listed files need not exist
// yet (a missing one is a row's error, not the shard's); a directory, glob or
// plain argument that names nothing is an error.
func ResolveInputs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "@"):
			paths, err := readList(a[1:])
			if err != nil {
				return nil, err
			}
			out = append(out, paths...)
		case strings.ContainsAny(a, "*?["):
			m, err := filepath.Glob(a)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrInputs, a, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("%w: %s matches no file", ErrInputs, a)
			}
			for _, p := range m {
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					out = append(out, p)
				}
			}
		default:
			st, err := os.Stat(a)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrInputs, err)
			}
			if !st.IsDir() {
				out = append(out, a)
				continue
			}
			err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.Type().IsRegular() {
					out = append(out, p)
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrInputs, err)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func readList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInputs, err)
	}
	defer f.Close()
	var out []string
	dir := filepath.Dir(path)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !filepath.IsAbs(l) {
			l = filepath.Join(dir, l)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInputs, path, err)
	}
	return out, nil
}

// HashInputs identifies an input list: its length and the SHA-256 of its
// items, each followed by a newline.
func HashInputs(items []string) Inputs {
	h := sha256.New()
	for _, s := range items {
		h.Write([]byte(s))
		h.Write([]byte{'\n'})
	}
	return Inputs{Count: len(items), SHA256: hex.EncodeToString(h.Sum(nil))}
}
