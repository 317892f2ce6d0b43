package modscan

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// MaxModuleSize bounds one decompressed module file, so a corrupt or
// hostile archive cannot exhaust memory. The largest Debian arm64 module is
// well under 64 MiB.
const MaxModuleSize = 256 << 20

// ScanOptions controls ScanModules.
type ScanOptions struct {
	// Layout is the kernel configuration to lay modules out for; the zero
	// value means DefaultLayoutConfig.
	Layout *LayoutConfig
	// Kconfig, when set, is a kernel .config file applied to Layout. A .deb
	// that ships boot/config-* uses that file unless IgnorePackageKconfig.
	Kconfig              string
	IgnorePackageKconfig bool
	// SkipRejected leaves out modules the kernel would refuse (ErrRejected)
	// and lists them in the dataset instead of failing the scan.
	SkipRejected bool
	// Workers is the number of files decompressed and laid out at once
	// (default GOMAXPROCS).
	Workers int
	// Generator is recorded in the dataset.
	Generator string
}

// moduleFileSuffixes are the module file names modprobe loads.
var moduleFileSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// IsModuleFile says whether a file name is a kernel module (.ko, .ko.xz,
// .ko.zst or .ko.gz).
func IsModuleFile(name string) bool {
	for _, s := range moduleFileSuffixes {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			return true
		}
	}
	return false
}

// rawModule is one module file as read, still compressed.
type rawModule struct {
	path string
	data []byte
}

// ScanModules reads every kernel module under p — a directory tree, a single
// module file, or a Debian package (.deb) — and returns the dataset of their
// memory layouts, sorted by name.
func ScanModules(p string, opt ScanOptions) (*ModuleDataset, error) {
	cfg := DefaultLayoutConfig()
	if opt.Layout != nil {
		cfg = *opt.Layout
	}
	if opt.Kconfig != "" {
		f, err := os.Open(opt.Kconfig)
		if err != nil {
			return nil, err
		}
		err = cfg.ApplyKconfig(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", opt.Kconfig, err)
		}
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	d := &ModuleDataset{Format: DatasetFormat, Generator: opt.Generator, Source: filepath.Base(p)}
	var files []rawModule
	switch {
	case st.IsDir():
		files, err = readModuleDir(p)
		for _, n := range []string{"modules.builtin", "modules.builtin.modinfo"} {
			if b, rerr := os.ReadFile(filepath.Join(p, n)); rerr == nil {
				d.Builtin = append(d.Builtin, parseBuiltin(n, b)...)
			}
		}
	case strings.HasSuffix(p, ".deb"):
		var f *os.File
		if f, err = os.Open(p); err != nil {
			return nil, err
		}
		var kconfig []byte
		files, kconfig, err = readDeb(f, d)
		f.Close()
		if err == nil && kconfig != nil && !opt.IgnorePackageKconfig && opt.Kconfig == "" {
			err = cfg.ApplyKconfig(bytes.NewReader(kconfig))
		}
	default:
		var b []byte
		if b, err = os.ReadFile(p); err == nil {
			files = []rawModule{{path: filepath.Base(p), data: b}}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	d.Layout = cfg
	if err := layoutAll(d, files, cfg, opt); err != nil {
		return nil, err
	}
	return d, nil
}

// readModuleDir collects the module files of a tree, in path order.
func readModuleDir(dir string) ([]rawModule, error) {
	var out []rawModule
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() || !IsModuleFile(e.Name()) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, rawModule{path: modulePath(filepath.ToSlash(rel)), data: b})
		return nil
	})
	return out, err
}

// modulePath shortens a path inside a package or tree to the part below
// lib/modules/VERSION/, the way depmod names modules.
func modulePath(p string) string {
	p = strings.TrimPrefix(p, "./")
	if i := strings.Index(p, "lib/modules/"); i >= 0 {
		rest := p[i+len("lib/modules/"):]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j+1:]
		}
	}
	return p
}

// layoutAll decompresses and lays out the files in parallel; results and
// the first error (by file order) do not depend on scheduling.
func layoutAll(d *ModuleDataset, files []rawModule, cfg LayoutConfig, opt ScanOptions) error {
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	type result struct {
		mod Module
		err error
	}
	results := make([]result, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				raw, err := decompressModule(files[i].data)
				if err != nil {
					results[i].err = fmt.Errorf("%s: %w", files[i].path, err)
					continue
				}
				l, err := LayoutModule(raw, files[i].path, cfg)
				if err != nil {
					results[i].err = err
					continue
				}
				results[i].mod = l.Module
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			if opt.SkipRejected && errors.Is(r.err, ErrRejected) {
				d.Skipped = append(d.Skipped, SkippedModule{Path: files[i].path, Reason: r.err.Error()})
				continue
			}
			return r.err
		}
		d.Modules = append(d.Modules, r.mod)
	}
	return d.finish()
}

// decompressModule undoes the compression kmod understands, chosen by the
// magic bytes as kmod does; plain ELF is returned as is.
func decompressModule(b []byte) ([]byte, error) {
	r, err := decompressor(bytes.NewReader(b), b)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return b, nil
	}
	defer r.Close()
	return readLimited(r, MaxModuleSize)
}

var (
	magicXZ   = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicGzip = []byte{0x1f, 0x8b}
)

// decompressor returns a reader for xz, zstd or gzip data (by the magic in
// head), or nil for anything else. The caller closes it.
func decompressor(r io.Reader, head []byte) (io.ReadCloser, error) {
	switch {
	case bytes.HasPrefix(head, magicXZ):
		zr, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%w: xz: %v", ErrArchive, err)
		}
		return io.NopCloser(zr), nil
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxModuleSize))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrArchive, err)
		}
		return zstdCloser{zr}, nil
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrArchive, err)
		}
		return zr, nil
	}
	return nil, nil
}

// zstdCloser releases the decoder's goroutines on Close.
type zstdCloser struct{ d *zstd.Decoder }

func (z zstdCloser) Read(p []byte) (int, error) { return z.d.Read(p) }
func (z zstdCloser) Close() error               { z.d.Close(); return nil }

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: decompress: %v", ErrArchive, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: decompressed size over %d bytes", ErrArchive, limit)
	}
	return b, nil
}

// readDeb reads a Debian binary package: an ar archive with debian-binary,
// control.tar.* (Package, Version, Architecture go into d) and data.tar.*
// (the module files and, if present, boot/config-*).
func readDeb(r io.Reader, d *ModuleDataset) (files []rawModule, kconfig []byte, err error) {
	ar, err := newArReader(r)
	if err != nil {
		return nil, nil, err
	}
	sawData := false
	for {
		name, body, err := ar.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		switch {
		case strings.HasPrefix(name, "control.tar"):
			if err := walkTar(body, name, func(h *tar.Header, tr io.Reader) error {
				if path.Clean(strings.TrimPrefix(h.Name, "./")) != "control" {
					return nil
				}
				b, err := readLimited(tr, 1<<20)
				if err != nil {
					return err
				}
				parseDebControl(b, d)
				return nil
			}); err != nil {
				return nil, nil, err
			}
		case strings.HasPrefix(name, "data.tar"):
			sawData = true
			if err := walkTar(body, name, func(h *tar.Header, tr io.Reader) error {
				n := strings.TrimPrefix(h.Name, "./")
				switch {
				case IsModuleFile(n):
					b, err := readLimited(tr, MaxModuleSize)
					if err != nil {
						return fmt.Errorf("%s: %w", n, err)
					}
					files = append(files, rawModule{path: modulePath(n), data: b})
				case strings.Contains(n, "lib/modules/") &&
					(strings.HasSuffix(n, "/modules.builtin") || strings.HasSuffix(n, "/modules.builtin.modinfo")):
					b, err := readLimited(tr, 16<<20)
					if err != nil {
						return fmt.Errorf("%s: %w", n, err)
					}
					d.Builtin = append(d.Builtin, parseBuiltin(path.Base(n), b)...)
				case strings.HasPrefix(n, "boot/config-"):
					b, err := readLimited(tr, 16<<20)
					if err != nil {
						return fmt.Errorf("%s: %w", n, err)
					}
					kconfig = b
				}
				return nil
			}); err != nil {
				return nil, nil, err
			}
		}
	}
	if !sawData {
		return nil, nil, fmt.Errorf("%w: no data.tar member", ErrArchive)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	return files, kconfig, nil
}

// walkTar calls fn for each regular file of a (possibly compressed) tar
// stream.
func walkTar(r io.Reader, member string, fn func(*tar.Header, io.Reader) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	head, _ := br.Peek(8)
	var src io.Reader = br
	dr, err := decompressor(br, head)
	if err != nil {
		return fmt.Errorf("%s: %w", member, err)
	}
	if dr != nil {
		defer dr.Close()
		src = dr
	}
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrArchive, member, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if err := fn(h, tr); err != nil {
			return fmt.Errorf("%s: %w", member, err)
		}
	}
}

// parseBuiltin reads the names of built-in modules from modules.builtin
// (one "kernel/DIR/NAME.ko" path a line) or modules.builtin.modinfo
// (NUL-separated "NAME.TAG=VALUE" strings, of which the names and the
// service aliases count), normalized as kmod compares them.
func parseBuiltin(file string, b []byte) []string {
	var out []string
	if file == "modules.builtin" {
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, moduleName(nil, l))
			}
		}
		return out
	}
	for _, e := range bytes.Split(b, []byte{0}) {
		name, kv, ok := strings.Cut(string(e), ".")
		if !ok || name == "" {
			continue
		}
		out = append(out, NormalizeModuleName(name))
		if a, ok := strings.CutPrefix(kv, "alias="); ok && a != "" && !strings.Contains(a, ":") {
			out = append(out, NormalizeModuleName(a))
		}
	}
	return out
}

// parseDebControl takes Package, Version and Architecture from a control
// file (RFC 822 style fields).
func parseDebControl(b []byte, d *ModuleDataset) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			d.Package = v
		case "Version":
			d.Version = v
		case "Architecture":
			d.Architecture = v
		}
	}
}

// arReader reads the common ar format a .deb uses: the "!<arch>\n" magic,
// then members, each a 60-byte header (name 16, mtime 12, uid 6, gid 6,
// mode 8, size 10, "`\n") and the data padded to an even length.
type arReader struct {
	r       *bufio.Reader
	pending int64 // bytes of the current member (and padding) not read yet
	off     int64
}

const arMagic = "!<arch>\n"

func newArReader(r io.Reader) (*arReader, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != arMagic {
		return nil, fmt.Errorf("%w: not an ar archive (no %q magic)", ErrArchive, strings.TrimSpace(arMagic))
	}
	return &arReader{r: br, off: int64(len(arMagic))}, nil
}

// next skips what is left of the current member and returns the next one's
// name and a reader for its data.
func (a *arReader) next() (string, io.Reader, error) {
	if a.pending > 0 {
		if _, err := io.CopyN(io.Discard, a.r, a.pending); err != nil {
			return "", nil, fmt.Errorf("%w: ar member truncated at offset %d", ErrArchive, a.off)
		}
		a.off += a.pending
		a.pending = 0
	}
	var h [60]byte
	n, err := io.ReadFull(a.r, h[:])
	if err == io.EOF {
		return "", nil, io.EOF
	}
	if err != nil {
		return "", nil, fmt.Errorf("%w: ar header truncated at offset %d (%d bytes)", ErrArchive, a.off, n)
	}
	if h[58] != '`' || h[59] != '\n' {
		return "", nil, fmt.Errorf("%w: bad ar header terminator at offset %d", ErrArchive, a.off)
	}
	name := strings.TrimRight(strings.TrimSpace(string(h[0:16])), "/")
	size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
	if err != nil || size < 0 {
		return "", nil, fmt.Errorf("%w: bad ar member size %q at offset %d", ErrArchive, h[48:58], a.off)
	}
	a.off += 60
	a.pending = size + size&1
	body := &arMember{a: a, left: size}
	return name, body, nil
}

// arMember reads one member's data and keeps the reader's position.
type arMember struct {
	a    *arReader
	left int64
}

func (m *arMember) Read(p []byte) (int, error) {
	if m.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > m.left {
		p = p[:m.left]
	}
	n, err := m.a.r.Read(p)
	m.left -= int64(n)
	m.a.pending -= int64(n)
	m.a.off += int64(n)
	if err == io.EOF && m.left > 0 {
		return n, fmt.Errorf("%w: ar member truncated at offset %d", ErrArchive, m.a.off)
	}
	return n, err
}

// LayoutModuleFile reads one module file (.ko, .ko.xz, .ko.zst or .ko.gz)
// and lays it out with LayoutModule.
func LayoutModuleFile(p string, cfg LayoutConfig) (*ModuleLayout, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	raw, err := decompressModule(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return LayoutModule(raw, p, cfg)
}
