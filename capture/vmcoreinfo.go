package capture

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// VMCoreInfo is the text of the kernel's VMCOREINFO note: one KEY=VALUE per
// line, written by crash_save_vmcoreinfo_init (kernel/vmcore_info.c) and, for
// arm64, arch_crash_save_vmcoreinfo (arch/arm64/kernel/vmcore_info.c), e.g.
//
//	PAGESIZE=4096
//	SYMBOL(swapper_pg_dir)=ffffa0e67fefe000
//	NUMBER(VA_BITS)=52
//	NUMBER(kimage_voffset)=0xffffa0e63e000000
//	NUMBER(PHYS_OFFSET)=0x40000000
//	NUMBER(TCR_EL1_T1SZ)=0xc
//	KERNELOFFSET=20e5fe200000
//
// Values are kept as text; the typed accessors parse them on demand and name
// the key in their errors.
type VMCoreInfo struct {
	keys   []string // in note order, for deterministic listing
	values map[string]string
}

// ParseVMCoreInfo parses VMCOREINFO text (trailing NUL padding allowed).
// Every non-empty line must be KEY=VALUE with a non-empty key; a repeated key
// keeps its first value.
func ParseVMCoreInfo(b []byte) (*VMCoreInfo, error) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		if !allZero(b[i:]) {
			return nil, fmt.Errorf("%w: NUL byte inside the text at offset %d", ErrVMCoreInfo, i)
		}
		b = b[:i]
	}
	v := &VMCoreInfo{values: map[string]string{}}
	for n, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("%w: line %d: %q is not KEY=VALUE", ErrVMCoreInfo, n+1, line)
		}
		if _, dup := v.values[key]; dup {
			continue
		}
		v.keys = append(v.keys, key)
		v.values[key] = val
	}
	return v, nil
}

// Keys returns the keys in note order.
func (v *VMCoreInfo) Keys() []string { return append([]string(nil), v.keys...) }

// Get returns the raw value of a key.
func (v *VMCoreInfo) Get(key string) (string, bool) {
	if v == nil {
		return "", false
	}
	s, ok := v.values[key]
	return s, ok
}

// OSRelease is OSRELEASE (uname -r of the kernel).
func (v *VMCoreInfo) OSRelease() string { s, _ := v.Get("OSRELEASE"); return s }

// Symbol returns SYMBOL(name), printed by VMCOREINFO_SYMBOL as bare hex.
func (v *VMCoreInfo) Symbol(name string) (uint64, bool, error) {
	return v.hex("SYMBOL(" + name + ")")
}

// KernelOffset returns KERNELOFFSET (the KASLR displacement, bare hex).
func (v *VMCoreInfo) KernelOffset() (uint64, bool, error) { return v.hex("KERNELOFFSET") }

// PageSize returns PAGESIZE (decimal).
func (v *VMCoreInfo) PageSize() (uint64, bool, error) { return v.dec("PAGESIZE") }

// Size returns SIZE(name) (decimal), e.g. SIZE(page).
func (v *VMCoreInfo) Size(name string) (uint64, bool, error) { return v.dec("SIZE(" + name + ")") }

// Number returns NUMBER(name). VMCOREINFO_NUMBER prints a signed decimal;
// arm64 prints its addresses as 0x-prefixed hex. Negative decimals are returned
// in two's complement.
func (v *VMCoreInfo) Number(name string) (uint64, bool, error) {
	key := "NUMBER(" + name + ")"
	s, ok := v.Get(key)
	if !ok {
		return 0, false, nil
	}
	x, err := parseNumber(s)
	if err != nil {
		return 0, true, fmt.Errorf("%w: %s=%q: %v", ErrVMCoreInfo, key, s, err)
	}
	return x, true, nil
}

func parseNumber(s string) (uint64, error) {
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		return strconv.ParseUint(h, 16, 64)
	}
	if strings.HasPrefix(s, "-") {
		x, err := strconv.ParseInt(s, 10, 64)
		return uint64(x), err
	}
	return strconv.ParseUint(s, 10, 64)
}

func (v *VMCoreInfo) hex(key string) (uint64, bool, error) {
	s, ok := v.Get(key)
	if !ok {
		return 0, false, nil
	}
	x, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		return 0, true, fmt.Errorf("%w: %s=%q: %v", ErrVMCoreInfo, key, s, err)
	}
	return x, true, nil
}

func (v *VMCoreInfo) dec(key string) (uint64, bool, error) {
	s, ok := v.Get(key)
	if !ok {
		return 0, false, nil
	}
	x, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, true, fmt.Errorf("%w: %s=%q: %v", ErrVMCoreInfo, key, s, err)
	}
	return x, true, nil
}
