package capture

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Lines as 6.12's /proc/kallsyms prints them (taken from the QEMU guest).
const kallsymsSample = `ffffa0e67e200000 T _text
ffffa0e67e200000 t __pi__text
ffffa0e67e210000 T _stext
ffffa0e67f150000 D _etext
ffffa0e67fefe000 T swapper_pg_dir
ffffa0e6051ba000 t xfs_fs_fill_super	[xfs]
ffffa0e6051ba000 T swapper_pg_dir	[evil]
ffffa0e680d30000 B _end
`

func TestReadKallsyms(t *testing.T) {
	s, err := ReadKallsyms(strings.NewReader(kallsymsSample), []string{"_text", "swapper_pg_dir", "_end", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	want := Symbols{"_text": 0xffffa0e67e200000, "swapper_pg_dir": 0xffffa0e67fefe000, "_end": 0xffffa0e680d30000}
	if len(s) != len(want) {
		t.Errorf("got %v, want %v", s, want)
	}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %#x, want %#x", k, s[k], v)
		}
	}
	if _, err := s.Lookup("absent"); !errors.Is(err, ErrNoSymbol) {
		t.Errorf("Lookup(absent) = %v", err)
	}
	// No trailing newline on the last line.
	if s, err := ReadKallsyms(strings.NewReader("ffff000000001000 T x"), []string{"x"}); err != nil || s["x"] != 0xffff000000001000 {
		t.Errorf("last line without newline: %v %v", s, err)
	}
}

func TestReadKallsymsErrors(t *testing.T) {
	cases := map[string]string{
		"short":        "ffff000000000000 T\n",
		"long":         "ffff000000000000 T a b c\n",
		"bad address":  "ok\nffffzz0000000000 T x\n",
		"wide address": "1ffff000000000000 T x\n",
		"type":         "ffff000000000000 TT x\n",
		"module":       "ffff000000000000 T x [mod\n",
	}
	for name, in := range cases {
		_, err := ReadKallsyms(strings.NewReader(in), []string{"x"})
		if !errors.Is(err, ErrKallsyms) {
			t.Errorf("%s: %v, want ErrKallsyms", name, err)
		} else if !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: error %q does not name the line", name, err)
		}
	}
	// kptr_restrict hides every address: an explicit error, not a zero root.
	_, err := ReadKallsyms(strings.NewReader("0000000000000000 T _text\n0000000000000000 T swapper_pg_dir\n"), []string{"swapper_pg_dir"})
	if !errors.Is(err, ErrNoSymbol) || !strings.Contains(err.Error(), "kptr_restrict") {
		t.Errorf("restricted: %v", err)
	}
}

const vmcoreinfoSample = "OSRELEASE=6.12.117+deb12-arm64\nPAGESIZE=4096\n" +
	"SYMBOL(swapper_pg_dir)=ffffa0e67fefe000\nNUMBER(VA_BITS)=52\n" +
	"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-268435456\nNUMBER(kimage_voffset)=0xffffa0e63e000000\n" +
	"NUMBER(PHYS_OFFSET)=0xfff0c52d80000000\nNUMBER(TCR_EL1_T1SZ)=0x10\nKERNELOFFSET=20e5fe200000\n" +
	"SIZE(page)=64\nPAGESIZE=16384\n\x00\x00\x00"

func TestParseVMCoreInfo(t *testing.T) {
	v, err := ParseVMCoreInfo([]byte(vmcoreinfoSample))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got uint64, ok bool, err error, want uint64) {
		t.Helper()
		if err != nil || !ok || got != want {
			t.Errorf("%s = %#x (%v, %v), want %#x", name, got, ok, err, want)
		}
	}
	x, ok, err := v.PageSize()
	check("PAGESIZE (first of two)", x, ok, err, 4096)
	x, ok, err = v.Symbol("swapper_pg_dir")
	check("SYMBOL", x, ok, err, 0xffffa0e67fefe000)
	x, ok, err = v.Number("VA_BITS")
	check("VA_BITS", x, ok, err, 52)
	x, ok, err = v.Number("PAGE_BUDDY_MAPCOUNT_VALUE")
	check("negative", x, ok, err, uint64(0xfffffffff0000000))
	x, ok, err = v.Number("PHYS_OFFSET")
	check("PHYS_OFFSET", x, ok, err, 0xfff0c52d80000000)
	x, ok, err = v.KernelOffset()
	check("KERNELOFFSET", x, ok, err, 0x20e5fe200000)
	x, ok, err = v.Size("page")
	check("SIZE(page)", x, ok, err, 64)
	if _, ok, err := v.Number("absent"); ok || err != nil {
		t.Errorf("absent number: %v %v", ok, err)
	}
	if got := strings.Join(v.Keys(), " "); !strings.HasPrefix(got, "OSRELEASE PAGESIZE SYMBOL(swapper_pg_dir)") || strings.Count(got, "PAGESIZE") != 1 {
		t.Errorf("keys %q", got)
	}
	if v.OSRelease() != "6.12.117+deb12-arm64" {
		t.Errorf("OSRELEASE %q", v.OSRelease())
	}
	var nilInfo *VMCoreInfo
	if _, ok, err := nilInfo.Number("VA_BITS"); ok || err != nil {
		t.Errorf("nil VMCoreInfo")
	}
}

func TestParseVMCoreInfoErrors(t *testing.T) {
	for _, in := range []string{"PAGESIZE=4096\nJUNK\n", "=x\n", "A=1\x00B=2"} {
		if _, err := ParseVMCoreInfo([]byte(in)); !errors.Is(err, ErrVMCoreInfo) {
			t.Errorf("%q: %v, want ErrVMCoreInfo", in, err)
		}
	}
	v, err := ParseVMCoreInfo([]byte("NUMBER(A)=0xg\nNUMBER(B)=12a\nSYMBOL(c)=xyz\nPAGESIZE=-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"A":        func() error { _, _, err := v.Number("A"); return err },
		"B":        func() error { _, _, err := v.Number("B"); return err },
		"c":        func() error { _, _, err := v.Symbol("c"); return err },
		"PAGESIZE": func() error { _, _, err := v.PageSize(); return err },
	} {
		if err := f(); !errors.Is(err, ErrVMCoreInfo) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzReadKallsyms(f *testing.F) {
	f.Add([]byte(kallsymsSample))
	f.Add([]byte("0000000000000000 T swapper_pg_dir\n"))
	f.Add([]byte("ffff000000000000 T x [m]\r\n\n"))
	f.Add([]byte(strings.Repeat("a", 70000)))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := ReadKallsyms(bytes.NewReader(in), KernelSymbols)
		if err != nil {
			if !errors.Is(err, ErrKallsyms) && !errors.Is(err, ErrNoSymbol) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		for name := range s {
			found := false
			for _, w := range KernelSymbols {
				found = found || w == name
			}
			if !found {
				t.Fatalf("returned unrequested symbol %q", name)
			}
		}
	})
}

func FuzzParseVMCoreInfo(f *testing.F) {
	f.Add([]byte(vmcoreinfoSample))
	f.Add([]byte("NUMBER(TCR_EL1_T1SZ)=0x10\nNUMBER(VA_BITS)=-5\n"))
	f.Add([]byte("A=\n\n=\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := ParseVMCoreInfo(in)
		if err != nil {
			if !errors.Is(err, ErrVMCoreInfo) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		for _, k := range v.Keys() {
			if _, ok := v.Get(k); !ok || k == "" {
				t.Fatalf("key %q listed but not found", k)
			}
			if _, _, err := v.Number(strings.TrimSuffix(strings.TrimPrefix(k, "NUMBER("), ")")); err != nil && !errors.Is(err, ErrVMCoreInfo) {
				t.Fatal(err)
			}
		}
	})
}

// FuzzNewKcore feeds mutated core files (header, program headers, notes) to
// the reader and then to DetectMachine: errors are fine, panics are not.
func FuzzNewKcore(f *testing.F) {
	fk, err := newFakeKernel(12, 52, 48)
	if err != nil {
		f.Fatal(err)
	}
	if err := fk.mapLeaf(0xffff000000200000, 0x40000000, 2, 0x0068000000000703); err != nil {
		f.Fatal(err)
	}
	f.Add(fk.core().chunks[0].data)
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		sc := fk.core()
		sc.chunks[0] = chunk{0, hdr}
		k, err := NewKcore(sc)
		if err != nil {
			if !errors.Is(err, ErrKcore) && !errors.Is(err, ErrVMCoreInfo) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		m, err := DetectMachine(k, nil, MachineHints{PageSize: 4096})
		if err != nil {
			return
		}
		src := NewTableSource(k, m)
		if _, err := src.Table(m.RootPA); err != nil && !errors.Is(err, ErrNotMapped) && !errors.Is(err, ErrKcore) && !errors.Is(err, ErrMachine) {
			t.Fatalf("unwrapped error %v", err)
		}
	})
}
