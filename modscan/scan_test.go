package modscan

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

func xzBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

func gzipBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var compressions = []struct {
	suffix string
	pack   func(testing.TB, []byte) []byte
}{
	{".ko", func(_ testing.TB, b []byte) []byte { return b }},
	{".ko.xz", xzBytes},
	{".ko.zst", zstdBytes},
	{".ko.gz", gzipBytes},
}

// TestScanDirectoryEachCompression scans a tree with the same module in
// every compression kmod supports and expects four identical layouts.
func TestScanDirectoryEachCompression(t *testing.T) {
	dir := t.TempDir()
	for i, c := range compressions {
		name := fmt.Sprintf("mod%d", i)
		p := filepath.Join(dir, "kernel", "drivers", name+c.suffix)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, c.pack(t, sampleModule(name).build()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a module"), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\nkernel/lib/crc-t10dif.ko\n"), 0o644)
	d, err := ScanModules(dir, ScanOptions{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Modules) != len(compressions) {
		t.Fatalf("%d modules, want %d", len(d.Modules), len(compressions))
	}
	for i, m := range d.Modules {
		if m.Name != fmt.Sprintf("mod%d", i) || m.Size != wantSample {
			t.Errorf("module %d: %s %v, want mod%d %v", i, m.Name, m.Size, i, wantSample)
		}
		if !strings.HasSuffix(m.Path, compressions[i].suffix) || !strings.HasPrefix(m.Path, "kernel/drivers/") {
			t.Errorf("path %q", m.Path)
		}
		if m.Vermagic != "" {
			t.Errorf("%s keeps vermagic %q although it equals the dataset's", m.Name, m.Vermagic)
		}
	}
	if d.KernelVersion != "6.12.0-test" || !strings.HasPrefix(d.Vermagic, "6.12.0-test SMP") {
		t.Errorf("kernel %q vermagic %q", d.KernelVersion, d.Vermagic)
	}
	if !d.IsBuiltin("ext4") || !d.IsBuiltin("crc_t10dif") || d.IsBuiltin("mod0") {
		t.Errorf("builtin %v", d.Builtin)
	}
	// Same input, other parallelism: same bytes out.
	d2, err := ScanModules(dir, ScanOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	d.WriteJSON(&a)
	d2.WriteJSON(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("scan output depends on the number of workers")
	}
}

func TestScanSingleFileAndErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.ko.zst")
	os.WriteFile(good, zstdBytes(t, sampleModule("good").build()), 0o644)
	d, err := ScanModules(good, ScanOptions{})
	if err != nil || len(d.Modules) != 1 || d.Modules[0].Size != wantSample {
		t.Fatalf("single file: %v %+v", err, d)
	}
	// A truncated xz stream is an archive error naming the file.
	bad := filepath.Join(dir, "tree")
	os.MkdirAll(bad, 0o755)
	x := xzBytes(t, sampleModule("trunc").build())
	os.WriteFile(filepath.Join(bad, "trunc.ko.xz"), x[:len(x)/2], 0o644)
	_, err = ScanModules(bad, ScanOptions{})
	if !errors.Is(err, ErrArchive) || !strings.Contains(err.Error(), "trunc.ko.xz") {
		t.Errorf("truncated xz: %v", err)
	}
	// A W+X module fails the scan, or is listed with SkipRejected.
	os.Remove(filepath.Join(bad, "trunc.ko.xz"))
	m := sampleModule("wx")
	m.sections[0].flags |= 1 // SHF_WRITE on .text
	os.WriteFile(filepath.Join(bad, "wx.ko"), m.build(), 0o644)
	os.WriteFile(filepath.Join(bad, "ok.ko"), sampleModule("ok").build(), 0o644)
	if _, err = ScanModules(bad, ScanOptions{}); !errors.Is(err, ErrRejected) {
		t.Errorf("W+X module: %v", err)
	}
	d, err = ScanModules(bad, ScanOptions{SkipRejected: true})
	if err != nil || len(d.Modules) != 1 || len(d.Skipped) != 1 || d.Skipped[0].Path != "wx.ko" {
		t.Errorf("skip rejected: %v %+v", err, d)
	}
	// Two files with one module name.
	os.WriteFile(filepath.Join(bad, "ok2.ko"), sampleModule("ok").build(), 0o644)
	if _, err = ScanModules(bad, ScanOptions{SkipRejected: true}); !errors.Is(err, ErrDuplicateModule) {
		t.Errorf("duplicate: %v", err)
	}
}

// tarBytes builds a tar stream of regular files (and one directory entry).
func tarBytes(t testing.TB, files map[string][]byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "./lib/", Typeflag: tar.TypeDir, Mode: 0o755})
	for _, n := range sortedKeys(files) {
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[n]))})
		tw.Write(files[n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// arBytes builds an ar archive the way dpkg-deb does (odd sizes padded).
func arBytes(members [][2]any) []byte {
	var buf bytes.Buffer
	buf.WriteString("!<arch>\n")
	for _, m := range members {
		name, data := m[0].(string), m[1].([]byte)
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(data))
		buf.Write(data)
		if len(data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

func testDeb(t testing.TB, dataPack func(testing.TB, []byte) []byte, dataName string) []byte {
	control := tarBytes(t, map[string][]byte{"./control": []byte(
		"Package: linux-image-6.12.0-test-arm64\nVersion: 6.12.0-1~test1\nArchitecture: arm64\n" +
			"Description: test kernel\n more description: with a colon\n")})
	data := tarBytes(t, map[string][]byte{
		"./boot/config-6.12.0-test-arm64":                      []byte("# comment\nCONFIG_ARM64_4K_PAGES=y\nCONFIG_KALLSYMS=y\n# CONFIG_KALLSYMS_ALL is not set\nCONFIG_MODULE_UNLOAD=y\nCONFIG_STRICT_MODULE_RWX=y\nCONFIG_RANDOMIZE_BASE=y\n"),
		"./lib/modules/6.12.0-test-arm64/kernel/a/alpha.ko.xz": xzBytes(t, sampleModule("alpha").build()),
		"./lib/modules/6.12.0-test-arm64/kernel/b/beta.ko":     sampleModule("beta").build(),
		"./lib/modules/6.12.0-test-arm64/modules.builtin":      []byte("kernel/fs/fuse/fuse.ko\n"),
		"./lib/modules/6.12.0-test-arm64/modules.builtin.modinfo": []byte(
			"fuse.license=GPL\x00fuse.alias=fs-fuse\x00fuse.alias=char-major-10-229\x00crc32c_generic.alias=crc32c\x00"),
		"./usr/share/doc/x/changelog.gz": gzipBytes(t, []byte("log")),
	})
	return arBytes([][2]any{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", gzipBytes(t, control)},
		{dataName, dataPack(t, data)},
	})
}

func TestScanDeb(t *testing.T) {
	for _, c := range []struct {
		name string
		pack func(testing.TB, []byte) []byte
	}{{"data.tar.xz", xzBytes}, {"data.tar.zst", zstdBytes}, {"data.tar.gz", gzipBytes}, {"data.tar", func(_ testing.TB, b []byte) []byte { return b }}} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "linux-image-test_arm64.deb")
			os.WriteFile(p, testDeb(t, c.pack, c.name), 0o644)
			d, err := ScanModules(p, ScanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Package != "linux-image-6.12.0-test-arm64" || d.Version != "6.12.0-1~test1" || d.Architecture != "arm64" {
				t.Errorf("control: %q %q %q", d.Package, d.Version, d.Architecture)
			}
			if d.Source != "linux-image-test_arm64.deb" {
				t.Errorf("source %q", d.Source)
			}
			// The package's config turns KALLSYMS_ALL off (wantSample assumes it on).
			if d.Layout.KallsymsAll || !d.Layout.Kallsyms {
				t.Errorf("kconfig not applied: %+v", d.Layout)
			}
			if len(d.Modules) != 2 || d.Modules[0].Name != "alpha" || d.Modules[1].Name != "beta" {
				t.Fatalf("modules %+v", d.Modules)
			}
			if d.Modules[0].Path != "kernel/a/alpha.ko.xz" {
				t.Errorf("path %q", d.Modules[0].Path)
			}
			if d.Modules[0].Size[ModData] != 1467 {
				t.Errorf("data %d, want 1467 (text symbols only)", d.Modules[0].Size[ModData])
			}
			for _, b := range []string{"fuse", "fs_fuse", "crc32c", "crc32c_generic"} {
				if !d.IsBuiltin(b) {
					t.Errorf("%s not built in: %v", b, d.Builtin)
				}
			}
			if d.IsBuiltin("char_major_10_229") == false {
				t.Errorf("service alias without ':' missing")
			}
			// IgnorePackageKconfig keeps the default layout.
			d2, err := ScanModules(p, ScanOptions{IgnorePackageKconfig: true})
			if err != nil || d2.Modules[0].Size != wantSample {
				t.Errorf("ignore kconfig: %v %v", err, d2.Modules[0].Size)
			}
		})
	}
}

func TestScanDebErrors(t *testing.T) {
	good := testDeb(t, xzBytes, "data.tar.xz")
	cases := map[string][]byte{
		"not ar":          []byte("PK\x03\x04 zip file"),
		"truncated":       good[:len(good)-100],
		"bad header":      append(append([]byte{}, good[:8+58]...), 'x', 'x'),
		"no data member":  arBytes([][2]any{{"debian-binary", []byte("2.0\n")}}),
		"bad member size": []byte("!<arch>\ndebian-binary   0           0     0     100644  12x4      `\n"),
		"data not tar":    arBytes([][2]any{{"data.tar.gz", gzipBytes(t, []byte("plain text, not a tar archive, long enough to fill a block"))}}),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.deb")
			os.WriteFile(p, b, 0o644)
			_, err := ScanModules(p, ScanOptions{})
			if !errors.Is(err, ErrArchive) {
				t.Fatalf("error %v, want ErrArchive", err)
			}
			if !strings.Contains(err.Error(), "x.deb") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestModulePath(t *testing.T) {
	for in, want := range map[string]string{
		"./lib/modules/6.12.0/kernel/fs/xfs/xfs.ko.xz":     "kernel/fs/xfs/xfs.ko.xz",
		"usr/lib/modules/6.12.0/kernel/fs/xfs/xfs.ko.zst":  "kernel/fs/xfs/xfs.ko.zst",
		"updates/dkms/foo.ko":                              "updates/dkms/foo.ko",
		"lib/modules/6.12.0-arm64/extra/nested/dir/bar.ko": "extra/nested/dir/bar.ko",
	} {
		if got := modulePath(in); got != want {
			t.Errorf("modulePath(%q) = %q, want %q", in, got, want)
		}
	}
	for name, want := range map[string]bool{"a.ko": true, "a.ko.xz": true, "a.ko.zst": true, "a.ko.gz": true,
		".ko": false, "a.ko.bz2": false, "a.o": false, "a.ko.xz.sig": false} {
		if IsModuleFile(name) != want {
			t.Errorf("IsModuleFile(%q) != %v", name, want)
		}
	}
}

func TestApplyKconfig(t *testing.T) {
	c := DefaultLayoutConfig()
	err := c.ApplyKconfig(strings.NewReader("CONFIG_ARM64_64K_PAGES=y\nCONFIG_KALLSYMS=y\n# CONFIG_KALLSYMS_ALL is not set\nCONFIG_LIVEPATCH=y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.PageSize != 65536 || !c.Kallsyms || c.KallsymsAll || c.ModuleUnload || c.StrictModuleRWX || !c.Livepatch || c.RandomizeBase {
		t.Errorf("%+v", c)
	}
	if err := c.ApplyKconfig(strings.NewReader("CONFIG_X=y\nbogus line\n")); !errors.Is(err, ErrDataset) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: %v", err)
	}
}
