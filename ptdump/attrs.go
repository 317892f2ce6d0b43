package ptdump

import (
	"fmt"
	"strings"

	"github.com/ptlab/ptlab/arm64"
)

// ProtBit is one attribute column of an arm64 dump line (ptdump_prot_bits):
// Set is printed when prot&Mask == Val, else Clear; an empty Clear prints
// nothing at all (the memory-type columns).
type ProtBit struct {
	Mask, Val  uint64
	Set, Clear string
}

// ProtBits are the attribute columns of current arm64 kernels, in print order
// (arch/arm64/mm/ptdump.c pte_bits): BLK means a valid block (type 0b01).
var ProtBits = []ProtBit{
	{arm64.PTEValid, arm64.PTEValid, " ", "F"},
	{arm64.PTEUser, arm64.PTEUser, "USR", "   "},
	{arm64.PTERdonly, arm64.PTERdonly, "ro", "RW"},
	{arm64.PTEPXN, arm64.PTEPXN, "NX", "x "},
	{arm64.PTEShared, arm64.PTEShared, "SHD", "   "},
	{arm64.PTEAF, arm64.PTEAF, "AF", "  "},
	{arm64.PTENG, arm64.PTENG, "NG", "  "},
	{arm64.PTECont, arm64.PTECont, "CON", "   "},
	{arm64.PTETypeMask, arm64.PMDTypeSect, "BLK", "   "},
	{arm64.PTEUXN, arm64.PTEUXN, "UXN", "   "},
	{arm64.PTEGP, arm64.PTEGP, "GP", "  "},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTDeviceNGnRnE), "DEVICE/nGnRnE", ""},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTDeviceNGnRE), "DEVICE/nGnRE", ""},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTNormalNC), "MEM/NORMAL-NC", ""},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTNormal), "MEM/NORMAL", ""},
	{arm64.PTEAttrIndxMask, arm64.AttrIndx(arm64.MTNormalTagged), "MEM/NORMAL-TAGGED", ""},
}

// ProtBitsTableBit is the older BLK column (v5.x-v6.x before the
// PMD_TYPE_MASK change): BLK whenever bit 1 is clear, so a present-invalid
// block shows BLK too.
var ProtBitsTableBit = func() []ProtBit {
	b := append([]ProtBit(nil), ProtBits...)
	b[8] = ProtBit{2, 2, "   ", "BLK"}
	return b
}()

// ProtMask is the OR of every column's mask (ptdump_initialize): the bits
// that decide whether two neighbouring entries print as one run. The output
// address, PTE_WRITE/DBM and the software bits are not among them.
func ProtMask(bits []ProtBit) uint64 {
	var m uint64
	for _, b := range bits {
		m |= b.Mask
	}
	return m
}

// decodeAttrs decodes attribute tokens; msg is non-empty for contradictory
// or repeated columns, which no kernel prints.
func decodeAttrs(arch Arch, level string, toks [][]byte) (*AttrSet, string) {
	s := &AttrSet{Tokens: make([]string, len(toks))}
	var perm []string
	var rw, x bool
	for i, t := range toks {
		tok := string(t)
		s.Tokens[i] = tok
		f, kind := attrToken(arch, tok)
		switch kind {
		case tokFlag:
			if s.Flags&f != 0 {
				return nil, fmt.Sprintf("attribute %q repeated", tok)
			}
			s.Flags |= f
		case tokRW:
			if rw {
				return nil, fmt.Sprintf("attribute %q repeated", tok)
			}
			rw = true
		case tokX:
			if x {
				return nil, fmt.Sprintf("attribute %q repeated", tok)
			}
			x = true
		case tokMem:
			if s.Mem != "" {
				return nil, fmt.Sprintf("two memory types %q and %q", s.Mem, tok)
			}
			s.Mem = tok
		default:
			s.Unknown = append(s.Unknown, tok)
		}
		if f&sizeAttrs == 0 || kind != tokFlag {
			perm = append(perm, tok)
		}
	}
	if rw && s.Flags&AttrReadOnly != 0 {
		return nil, "both ro and RW"
	}
	if x && s.Flags&AttrNX != 0 {
		return nil, "both NX and x"
	}
	s.Text = strings.Join(s.Tokens, " ")
	s.Perm = strings.Join(perm, " ")
	if arch == ArchARM64 {
		s.Prot = protFromAttrs(s, level)
	}
	return s, ""
}

// sizeAttrs are the columns that describe the leaf size, not permissions.
const sizeAttrs = AttrCont | AttrBlock | AttrPSE

type tokKind uint8

const (
	tokUnknown tokKind = iota
	tokFlag
	tokRW  // "RW": ro clear
	tokX   // "x": NX clear
	tokMem // arm64 memory type
)

func attrToken(arch Arch, t string) (Attr, tokKind) {
	switch t {
	case "USR":
		return AttrUser, tokFlag
	case "ro":
		return AttrReadOnly, tokFlag
	case "RW":
		return 0, tokRW
	case "NX":
		return AttrNX, tokFlag
	case "x":
		return 0, tokX
	}
	if arch == ArchX86 {
		return x86AttrToken(t)
	}
	switch t {
	case "F":
		return AttrInvalid, tokFlag
	case "SHD":
		return AttrShared, tokFlag
	case "AF":
		return AttrAF, tokFlag
	case "NG":
		return AttrNG, tokFlag
	case "CON":
		return AttrCont, tokFlag
	case "BLK":
		return AttrBlock, tokFlag
	case "UXN":
		return AttrUXN, tokFlag
	case "GP":
		return AttrGP, tokFlag
	case "DEVICE/nGnRnE", "DEVICE/nGnRE", "DEVICE/GRE", "MEM/NORMAL-NC", "MEM/NORMAL", "MEM/NORMAL-TAGGED":
		return 0, tokMem
	}
	return 0, tokUnknown
}

// protFromAttrs rebuilds the descriptor bits the arm64 columns prove: the
// inverse of dump_prot (arch/arm64/mm/ptdump.c) over the same column table
// (ProtBits). A column whose set string shows, or whose blank set string
// stands against an absent clear string (no "F" means valid), contributes its
// value; other columns prove nothing. The type bits then follow from F, BLK
// and the level: bit 1 is set for pages (pte_mkinvalid keeps it) and clear for
// blocks, which show BLK when valid under both kernels' BLK rules.
func protFromAttrs(s *AttrSet, level string) uint64 {
	has := func(t string) bool {
		for _, x := range s.Tokens {
			if x == t {
				return true
			}
		}
		return false
	}
	var prot uint64
	for _, b := range ProtBits {
		set, clear := strings.TrimSpace(b.Set), strings.TrimSpace(b.Clear)
		if (set != "" && has(set)) || (set == "" && clear != "" && !has(clear)) {
			prot |= b.Val
		}
	}
	if s.Mem == "DEVICE/GRE" {
		prot |= arm64.AttrIndx(mtDeviceGRE)
	}
	valid := s.Flags&AttrInvalid == 0
	if s.Flags&AttrBlock == 0 && (level == "PTE" || valid) {
		prot |= arm64.PTETypeMask &^ arm64.PTEValid
	}
	return prot
}

// mtDeviceGRE is MT_DEVICE_GRE, MAIR index 2 in kernels before 5.10 (index 2
// became MT_NORMAL_NC); the current column table no longer has it.
const mtDeviceGRE = 2
