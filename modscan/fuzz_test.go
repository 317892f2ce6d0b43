package modscan

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte(modinfoString("license=GPL", "name=xfs", "depends=libcrc32c", "softdep=pre: crc32c post: x y", "alias=fs-xfs")))
	f.Add([]byte("\x00\x00name=a\x00\x00\x00=empty\x00novalue\x00trailing=unterminated"))
	f.Add([]byte("a==b\x00softdep=pre:\x00softdep=post: pre: z\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		info := ParseModinfo(b)
		var enc bytes.Buffer
		for _, e := range info {
			if strings.ContainsAny(e.Key, "=\x00") || strings.Contains(e.Value, "\x00") {
				t.Fatalf("entry %q=%q holds a separator", e.Key, e.Value)
			}
			enc.WriteString(e.Key + "=" + e.Value + "\x00")
		}
		again := ParseModinfo(enc.Bytes())
		if len(again) != len(info) {
			t.Fatalf("re-parse gives %d entries, want %d", len(again), len(info))
		}
		for i := range info {
			if again[i] != info[i] {
				t.Fatalf("entry %d: %v then %v", i, info[i], again[i])
			}
		}
		// Every tag=value string with a '=' in the input is found.
		n := 0
		for _, s := range bytes.Split(b, []byte{0}) {
			if bytes.IndexByte(s, '=') >= 0 {
				n++
			}
		}
		if n != len(info) {
			t.Fatalf("%d entries, input has %d tag=value strings", len(info), n)
		}
		if len(info) > 0 {
			if v, ok := info.Get(info[0].Key); !ok || v != info[0].Value {
				t.Fatalf("Get(%q) = %q, %v", info[0].Key, v, ok)
			}
		}
		pre, post := info.Softdeps()
		for _, d := range append(pre, post...) {
			if d == "pre:" || d == "post:" || strings.ContainsAny(d, " \t\n") {
				t.Fatalf("softdep name %q", d)
			}
		}
		for _, d := range info.Depends() {
			if d == "" || strings.Contains(d, ",") {
				t.Fatalf("depends name %q", d)
			}
		}
	})
}

// FuzzLayoutModule feeds arbitrary bytes (seeded with real-shaped modules
// and damaged copies) to the ELF parser and layout: no panic, and every
// failure wraps one of the package's sentinels.
func FuzzLayoutModule(f *testing.F) {
	good := sampleModule("fz").build()
	f.Add(good)
	f.Add(good[:len(good)/2])
	damaged := bytes.Clone(good)
	damaged[0x3c] ^= 0xff // e_shnum
	f.Add(damaged)
	wx := sampleModule("wx")
	wx.sections[0].flags |= 1
	f.Add(wx.build())
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := LayoutModule(b, "fuzz.ko", DefaultLayoutConfig())
		if err != nil {
			if !errors.Is(err, ErrNotModule) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrRejected) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		for typ := ModMemType(0); typ < NumModMemTypes; typ++ {
			if l.Module.Size[typ] > 1<<32 {
				t.Fatalf("%v size %d over the kernel's 32 bits", typ, l.Module.Size[typ])
			}
		}
	})
}

// FuzzReadDeb feeds arbitrary bytes to the .deb reader (ar, tar,
// decompression): no panic; failures are archive errors.
func FuzzReadDeb(f *testing.F) {
	f.Add(testDeb(f, gzipBytes, "data.tar.gz"))
	f.Add(arBytes([][2]any{{"debian-binary", []byte("2.0\n")}, {"data.tar", tarBytes(f, map[string][]byte{"./x.ko": []byte("junk")})}}))
	f.Add([]byte("!<arch>\n"))
	f.Add([]byte("!<arch>\ndata.tar        0           0     0     100644  99999     `\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d ModuleDataset
		files, _, err := readDeb(bytes.NewReader(b), &d)
		if err != nil {
			if !errors.Is(err, ErrArchive) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		for _, fl := range files {
			if !IsModuleFile(fl.path) {
				t.Fatalf("non-module %q collected", fl.path)
			}
		}
	})
}

func FuzzReadModuleDataset(f *testing.F) {
	f.Add([]byte(`{"format":1,"layout":{"page_size":4096},"modules":[{"name":"a","size":[1,2,3,4,5,6,7]}]}`))
	f.Add(debianModulesJSON[:2000])
	f.Add(gzipBytes(f, []byte(`{"format":1}`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ReadModuleDataset(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrDataset) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		// What was accepted writes and reads back the same.
		var w bytes.Buffer
		if err := d.WriteJSON(&w); err != nil {
			t.Fatal(err)
		}
		d2, err := ReadModuleDataset(&w)
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if len(d2.Modules) != len(d.Modules) {
			t.Fatalf("%d modules after round trip, want %d", len(d2.Modules), len(d.Modules))
		}
		d.LoadOrder([]string{"a", "b"}, true)
	})
}

func FuzzParseServerModuleList(f *testing.F) {
	f.Add(serverModulesTxt)
	f.Add([]byte("# source: x\nfoo\nbar baz\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseServerModuleList(b)
		if err != nil {
			if !errors.Is(err, ErrDataset) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, n := range l.Names {
			if n == "" || seen[n] || strings.ContainsAny(n, "-# \t") {
				t.Fatalf("name %q", n)
			}
			seen[n] = true
		}
	})
}

func FuzzApplyKconfig(f *testing.F) {
	f.Add([]byte("CONFIG_ARM64_16K_PAGES=y\nCONFIG_KALLSYMS=y\n# CONFIG_X is not set\n"))
	f.Add([]byte("CONFIG_=\n=\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := DefaultLayoutConfig()
		if err := c.ApplyKconfig(bytes.NewReader(b)); err != nil {
			if !errors.Is(err, ErrDataset) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("accepted config is invalid: %v", err)
		}
	})
}
